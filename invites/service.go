package invites

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strconv"
	"strings"
	"time"

	"github.com/google/uuid"

	"github.com/esia-broker/esia-broker/storage"
)

// Roles of invite codes.
const (
	RoleParent  = "parent"
	RoleStudent = "student"
)

// Store is what the invites service needs of the database.
type Store interface {
	InTx(ctx context.Context, fn func(ctx context.Context) error) error
	SelectStudents(ctx context.Context, sel storage.StudentSelection) ([]storage.Student, error)
	Schools(ctx context.Context) ([]storage.School, error)
	CreateInvites(ctx context.Context, invs []storage.Invite) error
	OpenInvites(ctx context.Context, studentIDs []string, role string) ([]storage.Invite, error)
	RevokeInvites(ctx context.Context, ids []string) (int, error)
	ListInvites(ctx context.Context, f storage.InviteFilter) ([]storage.InviteRow, error)
	RedeemInvite(ctx context.Context, digest, role, accountID string) (*storage.Invite, error)
	UnredeemInvite(ctx context.Context, id string) error
	InviteByID(ctx context.Context, id string) (*storage.Invite, error)
	RevokeInvite(ctx context.Context, id string) (bool, error)
	LockStudents(ctx context.Context, ids []string) error
	ReserveAttempt(ctx context.Context, keys ...storage.LimitKey) (time.Time, error)
	Failed(ctx context.Context, keys ...storage.LimitKey) (time.Time, error)
	Succeeded(ctx context.Context, key string) error
	Audit(ctx context.Context, actor, action, target string, details map[string]any) error
}

// Service issues and redeems invite codes.
type Service struct {
	store  Store
	key    []byte
	now    func() time.Time
	limits Limits
}

// Limits are the wrong-code limits, per account and per IP.
type Limits struct {
	PerAccount storage.AttemptLimit
	PerIP      storage.AttemptLimit
}

// DefaultLimits: 5 wrong codes per account and 20 per IP within 15 minutes lock for 15 minutes.
func DefaultLimits() Limits {
	return Limits{
		PerAccount: storage.AttemptLimit{Max: 5, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
		PerIP:      storage.AttemptLimit{Max: 20, Window: 15 * time.Minute, Lockout: 15 * time.Minute},
	}
}

// NewService makes the service; key is the digest key (linking.Digester.InviteKey).
func NewService(store Store, key []byte, limits Limits) *Service {
	return &Service{store: store, key: key, now: time.Now, limits: limits}
}

// SetClock replaces the clock (tests).
func (s *Service) SetClock(now func() time.Time) { s.now = now }

// Selection names the students to issue codes for.
type Selection = storage.StudentSelection

// IssueRequest asks for one code per selected student.
type IssueRequest struct {
	Selection
	Role     string
	TTL      time.Duration
	Operator string
	// Force issues even when the students already have open codes for the role.
	Force bool
	// Progress, when set, is called as codes are made.
	Progress func(done, total int)
}

// Slip is one printed code: the only place the plain code exists.
type Slip struct {
	InviteID    string
	StudentID   string
	SchoolID    string
	SchoolName  string
	Class       string
	StudentName string
	Role        string
	Code        string
	ExpiresAt   time.Time
	// Replaces is set on a rotated code: the slip says the earlier code no longer works.
	Replaces bool
	// Birthdate is the card's (YYYY-MM-DD), for the issuer's checks; not printed.
	Birthdate string
}

// ErrOpenCodesExist is returned when issuing for students that already have open codes.
var ErrOpenCodesExist = errors.New("open codes exist")

// Issue makes one code per selected student.
func (s *Service) Issue(ctx context.Context, r IssueRequest) ([]Slip, error) {
	var slips []Slip
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		slips, err = s.issue(ctx, r, false)
		return err
	})
	return slips, err
}

// Rotate revokes the open codes of the selection for the role and issues new ones, in one
// transaction: a lost slip stops working the moment its replacement exists.
func (s *Service) Rotate(ctx context.Context, r IssueRequest) ([]Slip, int, error) {
	var slips []Slip
	var revoked int
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		revoked, err = s.revoke(ctx, r.Selection, r.Role, r.Operator, "invites.rotate")
		if err != nil {
			return err
		}
		slips, err = s.issue(ctx, r, true)
		return err
	})
	return slips, revoked, err
}

// FieldError is a request the service refuses for one of its fields; nothing was written.
type FieldError struct {
	Field  string // school, class, students, role or expiry
	Reason string
}

func (e *FieldError) Error() string { return e.Reason }

func checkRole(role string) error {
	if role != RoleParent && role != RoleStudent {
		return &FieldError{"role", fmt.Sprintf("role must be parent or student, got %q", role)}
	}
	return nil
}

// MaxTTL is the longest an invite code may stay valid.
const MaxTTL = 366 * 24 * time.Hour

// ParseTTL reads how long codes stay valid: a number of days ("30d", 1–366) or a Go duration
// ("72h") from an hour to MaxTTL — a code that dies at once would replace a working one.
func ParseTTL(s string) (time.Duration, error) {
	bad := &FieldError{"expiry", "use a number of days (1d…366d) or a duration from 1h to 8784h, like 72h"}
	if d, ok := strings.CutSuffix(s, "d"); ok {
		n, err := strconv.Atoi(d)
		if err != nil || n <= 0 || n > 366 || strconv.Itoa(n) != d {
			return 0, bad
		}
		return time.Duration(n) * 24 * time.Hour, nil
	}
	d, err := time.ParseDuration(s)
	if err != nil || d < time.Hour || d > MaxTTL {
		return 0, bad
	}
	return d, nil
}

func (s *Service) students(ctx context.Context, sel Selection) ([]storage.Student, error) {
	if sel.SchoolID == "" {
		return nil, &FieldError{"school", "a school is required"}
	}
	st, err := s.store.SelectStudents(ctx, sel)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(st))
	for i, x := range st {
		ids[i] = x.ID
	}
	if err := s.store.LockStudents(ctx, ids); err != nil {
		return nil, err
	}
	if len(st) == 0 {
		schools, err := s.store.Schools(ctx)
		if err != nil {
			return nil, err
		}
		if !slices.ContainsFunc(schools, func(sc storage.School) bool { return sc.ID == sel.SchoolID }) {
			return nil, &FieldError{"school", fmt.Sprintf("unknown school %q (add it with `esia-broker roster schools add`)", sel.SchoolID)}
		}
	}
	if len(sel.IDs) > 0 && len(st) != len(sel.IDs) {
		found := map[string]bool{}
		for _, x := range st {
			found[x.ID] = true
		}
		var missing []string
		for _, id := range sel.IDs {
			if !found[id] {
				missing = append(missing, fmt.Sprintf("%q", id))
			}
		}
		return nil, &FieldError{"students", fmt.Sprintf("not active students of school %q%s: %s", sel.SchoolID, classNote(sel.Class), strings.Join(missing, ", "))}
	}
	if len(st) == 0 {
		field := "school"
		if sel.Class != "" {
			field = "class"
		}
		return nil, &FieldError{field, fmt.Sprintf("no active students in school %q%s", sel.SchoolID, classNote(sel.Class))}
	}
	return st, nil
}

func classNote(c string) string {
	if c == "" {
		return ""
	}
	return fmt.Sprintf(", class %q", c)
}

func (s *Service) issue(ctx context.Context, r IssueRequest, rotating bool) ([]Slip, error) {
	if err := checkRole(r.Role); err != nil {
		return nil, err
	}
	if r.TTL <= 0 || r.TTL > MaxTTL {
		return nil, &FieldError{"expiry", "the expiry must be positive and at most 366 days"}
	}
	students, err := s.students(ctx, r.Selection)
	if err != nil {
		return nil, err
	}
	ids := make([]string, len(students))
	for i, st := range students {
		ids[i] = st.ID
	}
	if !r.Force && !rotating {
		open, err := s.store.OpenInvites(ctx, ids, r.Role)
		if err != nil {
			return nil, err
		}
		if len(open) > 0 {
			return nil, fmt.Errorf("%w: %d of the %d selected students already have open %s codes; use `invites rotate` to replace them (or --force to add more)",
				ErrOpenCodesExist, len(open), len(students), r.Role)
		}
	}
	names := map[string]string{}
	if schools, err := s.store.Schools(ctx); err == nil {
		for _, sc := range schools {
			names[sc.ID] = sc.Name
		}
	}
	now := s.now().UTC()
	invs := make([]storage.Invite, 0, len(students))
	slips := make([]Slip, 0, len(students))
	for i, st := range students {
		code, err := GenerateRandom()
		if err != nil {
			return nil, err
		}
		norm, _ := Normalize(code)
		in := storage.Invite{ID: uuid.NewString(), CodeDigest: Digest(s.key, norm), StudentID: st.ID, Role: r.Role, CreatedBy: r.Operator, CreatedAt: now, ExpiresAt: now.Add(r.TTL)}
		invs = append(invs, in)
		slips = append(slips, Slip{InviteID: in.ID, StudentID: st.ID, SchoolID: st.SchoolID, SchoolName: names[st.SchoolID], Class: st.Class,
			StudentName: storage.FullName(st.FamilyName, st.GivenName, st.MiddleName), Role: r.Role, Code: code, ExpiresAt: in.ExpiresAt, Replaces: rotating, Birthdate: st.Birthdate})
		if r.Progress != nil && (i%200 == 199 || i == len(students)-1) {
			r.Progress(i+1, len(students))
		}
	}
	if err := s.store.CreateInvites(ctx, invs); err != nil {
		return nil, err
	}
	err = s.store.Audit(ctx, r.Operator, "invites.issue", r.SchoolID, map[string]any{
		"class": r.Class, "role": r.Role, "count": len(invs), "ttl": r.TTL.String(), "rotate": rotating, "students": len(ids)})
	return slips, err
}

// Revoke revokes the open codes of a selection for role and returns how many.
func (s *Service) Revoke(ctx context.Context, sel Selection, role, operator string) (int, error) {
	var n int
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		var err error
		n, err = s.revoke(ctx, sel, role, operator, "invites.revoke")
		return err
	})
	return n, err
}

func (s *Service) revoke(ctx context.Context, sel Selection, role, operator, action string) (int, error) {
	if err := checkRole(role); err != nil {
		return 0, err
	}
	students, err := s.students(ctx, sel)
	if err != nil {
		return 0, err
	}
	ids := make([]string, len(students))
	for i, st := range students {
		ids[i] = st.ID
	}
	open, err := s.store.OpenInvites(ctx, ids, role)
	if err != nil {
		return 0, err
	}
	inviteIDs := make([]string, len(open))
	for i, o := range open {
		inviteIDs[i] = o.ID
	}
	n, err := s.store.RevokeInvites(ctx, inviteIDs)
	if err != nil {
		return 0, err
	}
	return n, s.store.Audit(ctx, operator, action, sel.SchoolID, map[string]any{"class": sel.Class, "role": role, "revoked": n})
}

// ErrInviteUsed is returned when revoking a code that was already used for a link.
var ErrInviteUsed = errors.New("the code was already used")

// RevokeOne revokes one code by its id. A code already revoked or expired is revoked without
// change; one already used gives ErrInviteUsed, an unknown id storage.ErrNotFound. A redemption
// at the same moment either wins (ErrInviteUsed) or finds the code revoked.
func (s *Service) RevokeOne(ctx context.Context, id, operator string) error {
	used := false
	err := s.store.InTx(ctx, func(ctx context.Context) error {
		in, err := s.store.InviteByID(ctx, id)
		if err != nil {
			return err
		}
		if err := s.store.LockStudents(ctx, []string{in.StudentID}); err != nil {
			return err
		}
		revoked, err := s.store.RevokeInvite(ctx, id)
		if errors.Is(err, storage.ErrInviteUsed) {
			// Committed all the same: the revocation asked for stays, so that a redemption
			// given back leaves the code revoked.
			used = true
			return nil
		}
		if err != nil || !revoked {
			return err
		}
		return s.store.Audit(ctx, operator, "invites.revoke", in.StudentID, map[string]any{"invite": id, "role": in.Role, "revoked": 1})
	})
	if err == nil && used {
		return ErrInviteUsed
	}
	return err
}

// List lists invites with their status; never the code.
func (s *Service) List(ctx context.Context, f storage.InviteFilter) ([]storage.InviteRow, error) {
	return s.store.ListInvites(ctx, f)
}

// Stats counts invites per school, class and role by status.
func (s *Service) Stats(ctx context.Context, f storage.InviteFilter) ([]storage.InviteStat, error) {
	rows, err := s.store.ListInvites(ctx, f)
	if err != nil {
		return nil, err
	}
	now := s.now()
	var out []storage.InviteStat
	idx := map[[3]string]int{}
	for _, r := range rows {
		k := [3]string{r.SchoolID, r.Class, r.Role}
		i, ok := idx[k]
		if !ok {
			i = len(out)
			idx[k] = i
			out = append(out, storage.InviteStat{SchoolID: r.SchoolID, Class: r.Class, Role: r.Role})
		}
		switch r.Status(now) {
		case "open":
			out[i].Open++
		case "redeemed":
			out[i].Redeemed++
		case "expired":
			out[i].Expired++
		case "revoked":
			out[i].Revoked++
		}
	}
	return out, nil
}

// Errors of redemption, to show to the person.
var (
	ErrLocked      = errors.New("too many wrong codes")
	ErrInvalidCode = errors.New("this code is not valid")
)

// LockedError tells until when redemption is locked.
type LockedError struct{ Until time.Time }

func (e *LockedError) Error() string {
	return "too many wrong codes; try again after " + e.Until.Format(time.RFC3339)
}
func (e *LockedError) Unwrap() error { return ErrLocked }

// Redeem spends a code for accountID. Wrong codes count against the account and the IP; while
// either is locked, no code is tried. The returned error is ErrInvalidCode (with the store's
// reason wrapped), a *LockedError, or a failure of the database.
func (s *Service) Redeem(ctx context.Context, input, role, accountID, ip string) (*storage.Invite, error) {
	if err := checkRole(role); err != nil {
		return nil, err
	}
	// The attempt is reserved before the code is looked at, so that concurrent guesses are
	// counted one by one and no more than the limit are ever tried.
	keys := []storage.LimitKey{{Key: "invite:account:" + accountID, Limit: s.limits.PerAccount}, {Key: "invite:ip:" + ip, Limit: s.limits.PerIP}}
	if until, err := s.store.ReserveAttempt(ctx, keys...); err != nil {
		return nil, err
	} else if !until.IsZero() {
		return nil, &LockedError{Until: until}
	}
	fail := func(reason error) (*storage.Invite, error) {
		lockedUntil, err := s.store.Failed(ctx, keys...)
		if err != nil {
			return nil, err
		}
		if err := s.store.Audit(ctx, "account:"+accountID, "invite.redeem_failed", "", map[string]any{"reason": reason.Error(), "role": role}); err != nil {
			return nil, err
		}
		if !lockedUntil.IsZero() {
			return nil, &LockedError{Until: lockedUntil}
		}
		return nil, fmt.Errorf("%w: %w", ErrInvalidCode, reason)
	}
	norm, err := Normalize(input)
	if err != nil {
		return fail(err)
	}
	in, err := s.store.RedeemInvite(ctx, Digest(s.key, norm), role, accountID)
	switch {
	case errors.Is(err, storage.ErrInviteUnknown), errors.Is(err, storage.ErrInviteUsed), errors.Is(err, storage.ErrInviteExpired),
		errors.Is(err, storage.ErrInviteRevoked), errors.Is(err, storage.ErrInviteWrongUse):
		return fail(err)
	case err != nil:
		return nil, err
	}

	return in, s.store.Audit(ctx, "account:"+accountID, "invite.redeem", in.ID, map[string]any{"role": role, "student": in.StudentID})
}

// Settled refunds the account's attempts once the code it redeemed was used for a link: only a
// code spent for good counts, so giving one back (already linked, wrong birth date) cannot be
// used to clear the count between guesses. The IP's attempts are never refunded.
func (s *Service) Settled(ctx context.Context, accountID string) error {
	return s.store.Succeeded(ctx, "invite:account:"+accountID)
}

// GiveBack returns a redeemed invite to open (the link it was for was refused, e.g. by age).
func (s *Service) GiveBack(ctx context.Context, inviteID string) error {
	return s.store.InTx(ctx, func(ctx context.Context) error {
		in, err := s.store.InviteByID(ctx, inviteID)
		if err != nil {
			return err
		}
		// Under the card's lock, as issuing and revoking: a rotation that skipped this code
		// while it was in use has committed its new one, which the give-back then sees.
		if err := s.store.LockStudents(ctx, []string{in.StudentID}); err != nil {
			return err
		}
		return s.store.UnredeemInvite(ctx, inviteID)
	})
}
