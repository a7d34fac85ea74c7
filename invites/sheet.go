package invites

import (
	"encoding/csv"
	"fmt"
	"html/template"
	"io"
	"time"
)

// RoleName is how a role is written on a slip and on pages.
func RoleName(role string) string {
	if role == RoleStudent {
		return "Обучающийся"
	}
	return "Родитель (законный представитель)"
}

var moscow = time.FixedZone("MSK", 3*3600)

// FormatDate writes a date as on a Russian form: 22.12.2026.
func FormatDate(t time.Time) string { return t.In(moscow).Format("02.01.2006") }

// FormatExpiry writes when a code stops working, to the minute, Moscow time: 22.12.2026 10:00.
// (A date alone, "until … inclusive", would promise the rest of a day the code does not have.)
func FormatExpiry(t time.Time) string { return t.In(moscow).Format("02.01.2006 15:04") }

var sheet = template.Must(template.New("sheet").Funcs(template.FuncMap{"role": RoleName, "date": FormatDate, "expiry": FormatExpiry}).Parse(`<!doctype html>
<html lang="ru"><head><meta charset="utf-8">
<title>Пригласительные коды — {{.Title}}</title>
<style>
@page { size: A4; margin: 12mm; }
* { box-sizing: border-box; }
body { font: 11pt/1.4 "DejaVu Sans", "Liberation Sans", Arial, sans-serif; color: #000; margin: 0; }
h1 { font-size: 13pt; margin: 0 0 6mm; }
.slip { border: 1px dashed #555; padding: 5mm 6mm; margin: 0 0 6mm; page-break-inside: avoid; break-inside: avoid; }
.slip .head { display: flex; justify-content: space-between; font-size: 10pt; }
.slip .name { font-size: 13pt; font-weight: bold; margin: 2mm 0; }
.slip .code { font: bold 20pt/1.2 "DejaVu Sans Mono", "Liberation Mono", monospace; letter-spacing: 1mm; margin: 2mm 0; }
.slip ol { margin: 2mm 0 0 5mm; padding: 0; font-size: 10pt; }
.cut { font-size: 8pt; color: #555; text-align: right; }
@media screen { body { max-width: 190mm; margin: 10mm auto; } }
</style></head><body>
<h1>Пригласительные коды для входа в электронный дневник — {{.Title}}</h1>
{{range .Slips}}<section class="slip">
<div class="head"><span>{{if .SchoolName}}{{.SchoolName}}{{else}}Школа {{.SchoolID}}{{end}}</span><span>Класс {{.Class}}</span></div>
<div class="name">{{.StudentName}}</div>
<div>Роль: <b>{{role .Role}}</b></div>
<div class="code">{{.Code}}</div>
<div>Код действует до {{expiry .ExpiresAt}} (время московское) и подходит только для этого {{if eq .Role "student"}}обучающегося{{else}}ребёнка{{end}}.</div>
{{if .Replaces}}<div>Этот код заменяет выданный ранее: прежний код больше не действует.</div>{{end}}
<ol>
<li>Откройте {{$.StartURL}} и нажмите «Войти через Госуслуги».</li>
<li>Войдите с подтверждённой учётной записью Госуслуг.</li>
<li>Выберите роль «{{role .Role}}» и введите этот код. Буквы можно вводить строчными, дефисы — не обязательно.</li>
</ol>
<div class="cut">✂ отрежьте по линии</div>
</section>
{{end}}</body></html>
`))

// WriteHTML writes the printable sheet: one slip per student, A4, no slip split across pages.
func WriteHTML(w io.Writer, title, startURL string, slips []Slip) error {
	if err := sheet.Execute(w, map[string]any{"Title": title, "StartURL": startURL, "Slips": slips}); err != nil {
		return fmt.Errorf("write invite sheet: %w", err)
	}
	return nil
}

// WriteCSV writes the slips for mail merge, with a header row.
func WriteCSV(w io.Writer, startURL string, slips []Slip) error {
	cw := csv.NewWriter(w)
	_ = cw.Write([]string{"school_id", "school_name", "class", "student", "role", "code", "expires", "start_url"})
	for _, s := range slips {
		_ = cw.Write([]string{s.SchoolID, csvSafe(s.SchoolName), csvSafe(s.Class), csvSafe(s.StudentName), RoleName(s.Role), s.Code, FormatExpiry(s.ExpiresAt), startURL})
	}
	cw.Flush()
	if err := cw.Error(); err != nil {
		return fmt.Errorf("write invite CSV: %w", err)
	}
	return nil
}

// csvSafe keeps a spreadsheet from reading a cell as a formula (CSV injection).
func csvSafe(s string) string {
	if s != "" && (s[0] == '=' || s[0] == '+' || s[0] == '-' || s[0] == '@' || s[0] == '\t' || s[0] == '\r') {
		return "'" + s
	}
	return s
}

// SheetTitle is the heading of a printed sheet of slips: the school's name (its id when the
// slips do not name it) and the class, when one was chosen.
func SheetTitle(schoolID, class string, slips []Slip) string {
	title := schoolID
	if len(slips) > 0 && slips[0].SchoolName != "" {
		title = slips[0].SchoolName
	}
	if class != "" {
		title += ", класс " + class
	}
	return title
}
