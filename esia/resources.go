package esia

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"net/http"
	"net/url"
	"regexp"
	"slices"
	"strings"
	"time"
)

// ID is an ESIA identifier: a person's oid, a kid's or a contact's id. ESIA's guide shows them
// as JSON numbers in some resources and strings in others, and versions differ; an ID takes
// either and keeps the digits as text, so no id is rounded through a float.
type ID string

// UnmarshalJSON implements json.Unmarshaler: a string, an integer number, or null.
func (id *ID) UnmarshalJSON(b []byte) error {
	s := strings.TrimSpace(string(b))
	switch {
	case s == "null":
		*id = ""
		return nil
	case strings.HasPrefix(s, `"`):
		var v string
		if err := json.Unmarshal(b, &v); err != nil {
			return fmt.Errorf("esia id: %w", err)
		}
		*id = ID(v)
		return nil
	}
	if s == "" || strings.Trim(s, "0123456789") != "" || len(s) > 40 {
		return fmt.Errorf("esia id: %.40q is neither a string nor a whole number", s)
	}
	*id = ID(s)
	return nil
}

// String returns the id's text.
func (id ID) String() string { return string(id) }

// Person is /rs/prns/{oid}, with ESIA's field names.
type Person struct {
	// OID is the person's own id, when ESIA includes it.
	OID        ID     `json:"oid"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	MiddleName string `json:"middleName"`
	// BirthDate is DD.MM.YYYY.
	BirthDate string `json:"birthDate"`
	Gender    string `json:"gender"`
	// SNILS is like 000-000-600 06.
	SNILS     string `json:"snils"`
	Trusted   bool   `json:"trusted"`
	Status    string `json:"status"`
	Verifying bool   `json:"verifying"`
	UpdatedOn int64  `json:"updatedOn"`
	// Fields are the names of the fields ESIA sent (not their values), sorted; read only for an
	// account ESIA reports as not confirmed.
	Fields []string `json:"-"`
}

// Contact is one element of /rs/prns/{oid}/ctts.
type Contact struct {
	ID     ID     `json:"id"`
	Type   string `json:"type"` // EML, MBT, PHN
	Value  string `json:"value"`
	VrfStu string `json:"vrfStu"`
}

// Kid is one element of /rs/prns/{oid}/kids.
type Kid struct {
	ID         ID     `json:"id"`
	FirstName  string `json:"firstName"`
	LastName   string `json:"lastName"`
	MiddleName string `json:"middleName"`
	BirthDate  string `json:"birthDate"`
	Gender     string `json:"gender"`
	SNILS      string `json:"snils"`
}

type elements[T any] struct {
	Elements []T `json:"elements"`
}

// fieldName is what a field name of ESIA's looks like; anything else is not reported.
var fieldName = regexp.MustCompile(`^[A-Za-z][A-Za-z0-9_]{0,39}$`)

// Person reads the person oid with an access token.
func (c *Client) Person(ctx context.Context, accessToken, oid string) (*Person, error) {
	var raw json.RawMessage
	if err := c.get(ctx, accessToken, "/rs/prns/"+url.PathEscape(oid), &raw); err != nil {
		return nil, err
	}
	var p Person
	if err := json.Unmarshal(raw, &p); err != nil {
		return nil, fmt.Errorf("%w: person: %v", ErrBadResponse, err)
	}
	if p.Trusted {
		return &p, nil // the field names are wanted only for unconfirmed accounts: no second decode on a normal login
	}
	var fields map[string]json.RawMessage
	if err := json.Unmarshal(raw, &fields); err != nil {
		return nil, fmt.Errorf("%w: person: %v", ErrBadResponse, err)
	}
	for k, v := range fields {
		if string(v) != "null" && string(v) != `""` && fieldName.MatchString(k) && len(p.Fields) < 64 {
			p.Fields = append(p.Fields, k)
		}
	}
	slices.Sort(p.Fields)
	return &p, nil
}

// Contacts reads the person's contacts.
func (c *Client) Contacts(ctx context.Context, accessToken, oid string) ([]Contact, error) {
	var e elements[Contact]
	if err := c.get(ctx, accessToken, "/rs/prns/"+url.PathEscape(oid)+"/ctts?embed=(elements)", &e); err != nil {
		return nil, err
	}
	return e.Elements, nil
}

// Kids reads the person's children.
func (c *Client) Kids(ctx context.Context, accessToken, oid string) ([]Kid, error) {
	var e elements[Kid]
	if err := c.get(ctx, accessToken, "/rs/prns/"+url.PathEscape(oid)+"/kids?embed=(elements)", &e); err != nil {
		return nil, err
	}
	return e.Elements, nil
}

// get reads a resource. A GET is safe to repeat, so a failure to reach ESIA is retried once
// after a short pause; an answer (even an error) is not.
func (c *Client) get(ctx context.Context, token, path string, out any) (err error) {
	defer func(start time.Time) { c.observe(resourceName(path), start, err) }(time.Now())
	var lastErr error
	for attempt := range 2 {
		if attempt > 0 {
			select {
			case <-ctx.Done():
				return fmt.Errorf("%w: %v", ErrUnavailable, ctx.Err())
			case <-time.After(200 * time.Millisecond):
			}
		}
		lastErr = c.getOnce(ctx, token, path, out)
		if lastErr == nil || !errors.Is(lastErr, ErrUnavailable) {
			return lastErr
		}
	}
	return lastErr
}

func (c *Client) getOnce(ctx context.Context, token, path string, out any) error {
	ctx, cancel := context.WithTimeout(ctx, c.cfg.Timeout)
	defer cancel()
	req, err := http.NewRequestWithContext(ctx, http.MethodGet, c.cfg.BaseURL+path, nil)
	if err != nil {
		return fmt.Errorf("esia request: %w", err)
	}
	req.Header.Set("Authorization", "Bearer "+token)
	req.Header.Set("Accept", "application/json")
	body, status, err := c.do(req)
	if err != nil {
		return err
	}
	switch {
	case status >= 500:
		return fmt.Errorf("%w: %w: %s answered HTTP %d", ErrUnavailable, ErrServer, resourceName(path), status)
	case status != http.StatusOK:
		var e struct {
			Error       string `json:"error"`
			Description string `json:"error_description"`
			Code        string `json:"code"`
			Message     string `json:"message"`
		}
		if json.Unmarshal(body, &e) != nil {
			if te := textError(body, status); te != nil {
				return te
			}
		}
		desc := e.Description
		if desc == "" {
			desc = e.Message
		}
		return NewError(e.Error+e.Code, desc, status)
	}
	if err := json.Unmarshal(body, out); err != nil {
		return fmt.Errorf("%w: %s: %v", ErrBadResponse, resourceName(path), err)
	}
	return nil
}

func resourceName(path string) string {
	switch {
	case strings.Contains(path, "/ctts"):
		return "contacts"
	case strings.Contains(path, "/kids"):
		return "kids"
	}
	return "person"
}

// ISOBirthDate converts ESIA's DD.MM.YYYY to YYYY-MM-DD; "" when it is not a valid date.
func ISOBirthDate(d string) string {
	t, err := time.Parse("02.01.2006", d)
	if err != nil {
		return ""
	}
	return t.Format("2006-01-02")
}
