package esiatest

import "fmt"

// snilsControl computes the control number of the first nine SNILS digits.
func snilsControl(d [9]int) int {
	sum := 0
	for i, v := range d {
		sum += v * (9 - i)
	}
	switch {
	case sum < 100:
		return sum
	case sum == 100 || sum == 101:
		return 0
	}
	c := sum % 101
	if c == 100 {
		return 0
	}
	return c
}

// FormatSNILS writes a nine-digit number with its control number as ESIA does: 000-000-000 00.
func FormatSNILS(n int) string {
	var d [9]int
	for i := 8; i >= 0; i-- {
		d[i] = n % 10
		n /= 10
	}
	return fmt.Sprintf("%d%d%d-%d%d%d-%d%d%d %02d", d[0], d[1], d[2], d[3], d[4], d[5], d[6], d[7], d[8], snilsControl(d))
}

// ValidSNILS tells whether s, as ESIA writes it, has a correct control number.
func ValidSNILS(s string) bool {
	var d [9]int
	var c int
	if n, err := fmt.Sscanf(s, "%1d%1d%1d-%1d%1d%1d-%1d%1d%1d %2d", &d[0], &d[1], &d[2], &d[3], &d[4], &d[5], &d[6], &d[7], &d[8], &c); err != nil || n != 10 {
		return false
	}
	return snilsControl(d) == c
}
