package main

import (
	"context"
	"encoding/csv"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/invites"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/storage"
)

// problems says "1 problem" or "N problems".
func problems(n int) string {
	if n == 1 {
		return "1 problem"
	}
	return fmt.Sprintf("%d problems", n)
}

func progress(w io.Writer, what string) func(done, total int) {
	return func(done, total int) {
		fmt.Fprintf(w, "\r%s: %d/%d", what, done, total)
		if done == total {
			fmt.Fprintln(w)
		}
	}
}

func (a *app) rosterCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "roster", Short: "Import and manage the school roster (student cards)"}
	var o linking.ImportOptions
	imp := &cobra.Command{
		Use:   "import FILE",
		Short: "Import student cards from CSV or JSON lines (the whole file or nothing)",
		Long: "CSV header (the guardian columns may repeat as guardian2_…, guardian3_…):\n  " + linking.CSVHeader +
			"\nJSON lines: one card per line, {\"student_id\", \"school_id\", \"class\", \"family_name\", \"given_name\", \"middle_name\",\n  \"birthdate\", \"snils\", \"guardians\": [{\"snils\", \"name\"}], \"active\"}.\nDates are YYYY-MM-DD or DD.MM.YYYY. SNILS are checked and stored only as keyed digests.",
		Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				link, _, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				o.Operator = a.actor()
				o.Progress = progress(a.stderr, "importing")
				rep, err := link.Import(cmd.Context(), f, o)
				if rep != nil {
					for _, e := range rep.Errors {
						fmt.Fprintln(a.stdout, e.String())
					}
					verb := "imported"
					switch {
					case errors.Is(err, linking.ErrInvalidRows):
						verb = "checked, nothing imported"
					case o.DryRun:
						verb = "would import (dry run)"
					}
					fmt.Fprintf(a.stdout, "%s: %d rows: %d created, %d updated, %d unchanged, %d skipped\n", verb, rep.Rows, rep.Created, rep.Updated, rep.Unchanged, rep.Skipped)
				}
				if errors.Is(err, linking.ErrInvalidRows) {
					return fmt.Errorf("%s in %s; nothing was imported (fix them, or use --skip-invalid to import the good rows)", problems(len(rep.Errors)), args[0])
				}
				return err
			})
		},
	}
	imp.Flags().BoolVar(&o.DryRun, "dry-run", false, "check and count, write nothing")
	imp.Flags().BoolVar(&o.SkipInvalid, "skip-invalid", false, "import the good rows and report the bad ones")
	imp.Flags().StringVar(&o.Format, "format", "", "csv or jsonl (default: from the content)")

	schools := &cobra.Command{Use: "schools", Short: "Register schools"}
	schools.AddCommand(&cobra.Command{
		Use: "add ID NAME", Short: "Add or rename a school", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !linking.ValidID(args[0]) {
				return fmt.Errorf("school id %q: use 1-64 letters, digits or . _ : -", args[0])
			}
			if n, ok := linking.CleanName(args[1]); !ok || n == "" {
				return fmt.Errorf("school name: 1-100 letters, digits, spaces and - ' . , ( ) № « »; no control, bidi or zero-width characters")
			}
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				if err := s.UpsertSchool(cmd.Context(), args[0], strings.TrimSpace(args[1])); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "school %s: %s\n", args[0], args[1])
				return s.Audit(cmd.Context(), a.actor(), "school.upsert", args[0], nil)
			})
		},
	}, &cobra.Command{
		Use: "import FILE", Short: "Add or rename schools from a CSV of id,name", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			f, err := os.Open(args[0])
			if err != nil {
				return err
			}
			defer f.Close()
			rows, err := csv.NewReader(f).ReadAll()
			if err != nil {
				return fmt.Errorf("%s: %w", args[0], err)
			}
			for i, r := range rows {
				if len(r) != 2 || !linking.ValidID(r[0]) {
					return fmt.Errorf("%s line %d: want id,name with an id of 1-64 letters, digits or . _ : -; nothing was imported", args[0], i+1)
				}
				if n, ok := linking.CleanName(r[1]); !ok || n == "" {
					return fmt.Errorf("%s line %d: the school name must be 1-100 letters, digits, spaces and - ' . , ( ) № « », with no control, bidi or zero-width characters; nothing was imported", args[0], i+1)
				}
			}
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				err := s.InTx(cmd.Context(), func(ctx context.Context) error {
					for _, r := range rows {
						if err := s.UpsertSchool(ctx, r[0], strings.TrimSpace(r[1])); err != nil {
							return err
						}
					}
					return s.Audit(ctx, a.actor(), "school.import", "", map[string]any{"schools": len(rows)})
				})
				if err == nil {
					fmt.Fprintf(a.stdout, "imported %d schools\n", len(rows))
				}
				return err
			})
		},
	}, &cobra.Command{
		Use: "list", Short: "List schools", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				sc, err := s.Schools(cmd.Context())
				for _, x := range sc {
					fmt.Fprintf(a.stdout, "%s\t%s\n", x.ID, x.Name)
				}
				return err
			})
		},
	})
	deact := &cobra.Command{
		Use: "deactivate STUDENT_ID", Short: "Mark a student who left as inactive", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				link, _, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				changed, err := link.Deactivate(cmd.Context(), args[0], a.actor())
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no student %q", args[0])
				}
				if err == nil && !changed {
					fmt.Fprintf(a.stdout, "student %s was already inactive\n", args[0])
				} else if err == nil {
					fmt.Fprintf(a.stdout, "student %s is now inactive\n", args[0])
				}
				return err
			})
		},
	}
	cmd.AddCommand(imp, schools, deact)
	return cmd
}

func parseTTL(s string) (time.Duration, error) {
	d, err := invites.ParseTTL(s)
	if err != nil {
		return 0, fmt.Errorf("--expires %q: %w", s, err)
	}
	return d, nil
}

func (a *app) invitesCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "invites", Short: "Issue, rotate, revoke, list and print invite codes"}
	type selFlags struct {
		school, class, role, expires, out, format, startURL string
		students                                            []string
		force                                               bool
	}
	bindSel := func(c *cobra.Command, f *selFlags, issuing bool) {
		c.Flags().StringVar(&f.school, "school", "", "school id (required)")
		c.Flags().StringVar(&f.class, "class", "", "class, e.g. 7А")
		c.Flags().StringSliceVar(&f.students, "student", nil, "student id (repeat for several)")
		c.Flags().StringVar(&f.role, "role", "", "parent or student (required)")
		if issuing {
			c.Flags().StringVar(&f.expires, "expires", "30d", "how long the codes are valid: 30d, 72h…")
			c.Flags().StringVar(&f.out, "out", "", "write the slips to this file (default: standard output)")
			c.Flags().StringVar(&f.format, "format", "html", "html (printable A4 sheet) or csv (mail merge)")
			c.Flags().StringVar(&f.startURL, "start-url", "", "the diary's start page printed on the slips (default: the issuer)")
		}
	}
	check := func(f *selFlags) error {
		var p []string
		if f.school == "" {
			p = append(p, "--school is required")
		}
		if f.role != invites.RoleParent && f.role != invites.RoleStudent {
			p = append(p, "--role must be parent or student")
		}
		if f.format != "" && f.format != "html" && f.format != "csv" {
			p = append(p, "--format must be html or csv")
		}
		if len(p) > 0 {
			return errors.New(strings.Join(p, "; "))
		}
		return nil
	}
	write := func(cfg *config.Config, f *selFlags, slips []invites.Slip) error {
		var w io.Writer = a.stdout
		if f.out != "" {
			file, err := os.OpenFile(f.out, os.O_WRONLY|os.O_CREATE|os.O_TRUNC, 0o600)
			if err != nil {
				return err
			}
			defer file.Close()
			w = file
		}
		start := f.startURL
		if start == "" {
			start = cfg.Issuer
		}
		title := invites.SheetTitle(f.school, f.class, slips)
		var err error
		if f.format == "csv" {
			err = invites.WriteCSV(w, start, slips)
		} else {
			err = invites.WriteHTML(w, title, start, slips)
		}
		if err == nil && f.out != "" {
			fmt.Fprintf(a.stderr, "wrote %d slips to %s (the codes exist only there: keep it safe)\n", len(slips), f.out)
		}
		return err
	}
	var issueF, rotateF, revokeF selFlags
	run := func(f *selFlags, rotate bool) func(cmd *cobra.Command, _ []string) error {
		return func(cmd *cobra.Command, _ []string) error {
			if err := check(f); err != nil {
				return err
			}
			ttl, err := parseTTL(f.expires)
			if err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				_, inv, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				req := invites.IssueRequest{Selection: invites.Selection{SchoolID: f.school, Class: f.class, IDs: f.students}, Role: f.role, TTL: ttl,
					Operator: a.actor(), Force: f.force, Progress: progress(a.stderr, "issuing codes")}
				var slips []invites.Slip
				revokedN := 0
				if rotate {
					var n int
					slips, n, err = inv.Rotate(cmd.Context(), req)
					if err == nil {
						fmt.Fprintf(a.stderr, "revoked %d open codes\n", n)
						revokedN = n
					}
				} else {
					slips, err = inv.Issue(cmd.Context(), req)
				}
				if err != nil {
					return err
				}
				if f.role == invites.RoleStudent {
					young := 0
					for _, sl := range slips {
						if age, err := linking.Age(sl.Birthdate, time.Now()); err == nil && age < linking.AdultAge {
							young++
						}
					}
					if young > 0 {
						fmt.Fprintf(a.stderr, "note: %d of these students are under 14: a student code works for them only with their own ESIA account (a parent registers it on Gosuslugi); otherwise give the parent a parent code\n", young)
					}
				}
				if rotate && revokedN > 0 {
					if f.format == "csv" {
						fmt.Fprintln(a.stderr, "the earlier codes no longer work: tell the families that had them")
					} else {
						fmt.Fprintln(a.stderr, "the new slips say that the earlier codes no longer work")
					}
				}
				return write(cfg, f, slips)
			})
		}
	}
	issue := &cobra.Command{Use: "issue", Short: "Issue one code per selected student and print the slips", Args: cobra.NoArgs, RunE: run(&issueF, false)}
	bindSel(issue, &issueF, true)
	issue.Flags().BoolVar(&issueF.force, "force", false, "issue even where open codes exist")
	rotate := &cobra.Command{Use: "rotate", Short: "Revoke the open codes of the selection and issue new ones (a lost slip)", Args: cobra.NoArgs, RunE: run(&rotateF, true)}
	bindSel(rotate, &rotateF, true)
	revoke := &cobra.Command{
		Use: "revoke", Short: "Revoke the open codes of the selection", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if err := check(&revokeF); err != nil {
				return err
			}
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				_, inv, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				n, err := inv.Revoke(cmd.Context(), invites.Selection{SchoolID: revokeF.school, Class: revokeF.class, IDs: revokeF.students}, revokeF.role, a.actor())
				if err == nil {
					fmt.Fprintf(a.stdout, "revoked %d codes\n", n)
				}
				return err
			})
		},
	}
	bindSel(revoke, &revokeF, false)
	var lf storage.InviteFilter
	list := &cobra.Command{
		Use: "list", Short: "List codes with their status (never the code itself)", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				_, inv, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				rows, err := inv.List(cmd.Context(), lf)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SCHOOL\tCLASS\tSTUDENT\tROLE\tSTATUS\tEXPIRES\tREDEEMED BY\tREDEEMED AT")
				now := time.Now()
				for _, r := range rows {
					by, at := "-", "-"
					if r.RedeemedBy != nil {
						by = *r.RedeemedBy
					}
					if r.RedeemedAt != nil {
						at = r.RedeemedAt.UTC().Format(time.RFC3339)
					}
					fmt.Fprintf(tw, "%s\t%s\t%s %s\t%s\t%s\t%s\t%s\t%s\n", r.SchoolID, r.Class, r.FamilyName, r.GivenName, r.Role, r.Status(now), r.ExpiresAt.UTC().Format("2006-01-02"), by, at)
				}
				return tw.Flush()
			})
		},
	}
	stats := &cobra.Command{
		Use: "stats", Short: "Count codes per school, class and role by status", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				_, inv, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				st, err := inv.Stats(cmd.Context(), lf)
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SCHOOL\tCLASS\tROLE\tOPEN\tREDEEMED\tEXPIRED\tREVOKED")
				for _, x := range st {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%d\t%d\t%d\t%d\n", x.SchoolID, x.Class, x.Role, x.Open, x.Redeemed, x.Expired, x.Revoked)
				}
				return tw.Flush()
			})
		},
	}
	for _, c := range []*cobra.Command{list, stats} {
		c.Flags().StringVar(&lf.SchoolID, "school", "", "school id")
		c.Flags().StringVar(&lf.Class, "class", "", "class")
		c.Flags().StringVar(&lf.Role, "role", "", "parent or student")
	}
	cmd.AddCommand(issue, rotate, revoke, list, stats)
	return cmd
}

func (a *app) accountsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "accounts", Short: "Look at and manage accounts and their links"}
	withAccount := func(fn func(ctx context.Context, s *storage.Store, acct *storage.Account) error) func(cmd *cobra.Command, args []string) error {
		return func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				acct, err := s.Account(cmd.Context(), args[0])
				if errors.Is(err, storage.ErrNotFound) {
					return fmt.Errorf("no account %q", args[0])
				}
				if err != nil {
					return err
				}
				return fn(cmd.Context(), s, acct)
			})
		}
	}
	show := &cobra.Command{Use: "show ACCOUNT_ID", Short: "Show an account", Args: cobra.ExactArgs(1),
		RunE: withAccount(func(_ context.Context, _ *storage.Store, acct *storage.Account) error {
			enc := json.NewEncoder(a.stdout)
			enc.SetIndent("", "  ")
			sub := ""
			if acct.UpstreamSub != nil {
				sub = *acct.UpstreamSub
			}
			return enc.Encode(map[string]any{"id": acct.ID, "kind": acct.Kind, "upstream": acct.Upstream, "upstream_id": sub, "family_name": acct.FamilyName,
				"given_name": acct.GivenName, "middle_name": acct.MiddleName, "birthdate": acct.Birthdate, "has_snils": acct.SNILSDigest != "", "status": acct.Status,
				"created_at": acct.CreatedAt, "updated_at": acct.UpdatedAt})
		})}
	links := &cobra.Command{Use: "links ACCOUNT_ID", Short: "List an account's links (revoked ones too)", Args: cobra.ExactArgs(1),
		RunE: withAccount(func(ctx context.Context, s *storage.Store, acct *storage.Account) error {
			ls, err := s.Links(ctx, acct.ID, true)
			if err != nil {
				return err
			}
			tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
			fmt.Fprintln(tw, "LINK\tSTUDENT\tRELATION\tMETHOD\tCREATED\tREVOKED")
			for _, l := range ls {
				fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", l.ID, l.StudentID, l.Relation, l.Method, l.CreatedAt.UTC().Format(time.RFC3339), fmtTime(l.RevokedAt))
			}
			return tw.Flush()
		})}
	unlink := &cobra.Command{Use: "unlink ACCOUNT_ID LINK_ID", Short: "Revoke one link", Args: cobra.ExactArgs(2),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				ctx := cmd.Context()
				ls, err := s.Links(ctx, args[0], false)
				if err != nil {
					return err
				}
				if !slices.ContainsFunc(ls, func(l storage.Link) bool { return l.ID == args[1] }) {
					return fmt.Errorf("account %s has no active link %q", args[0], args[1])
				}
				linker, _, err := broker.Services(cfg, s)
				if err != nil {
					return err
				}
				// The link ends as the diaries' DELETE /api/v1/links/{id} ends it: with the
				// account's sessions and tokens, and a sub-account left without a parent.
				l, err := linker.EndLink(ctx, args[1], a.actor())
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "revoked link %s (%s); the account's sessions and tokens ended\n", l.ID, l.StudentID)
				return nil
			})
		}}
	disable := &cobra.Command{Use: "disable ACCOUNT_ID", Short: "Disable an account: it can no longer log in; its sessions and tokens end", Args: cobra.ExactArgs(1),
		RunE: withAccount(func(ctx context.Context, s *storage.Store, acct *storage.Account) error {
			return s.InTx(ctx, func(ctx context.Context) error {
				if err := s.SetAccountStatus(ctx, acct.ID, "disabled"); err != nil {
					return err
				}
				if err := s.RevokeTokensOf(ctx, acct.ID); err != nil {
					return err
				}
				if err := s.AppendEvent(ctx, storage.Event{Type: storage.EventAccountDisabled, AccountID: acct.ID}); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "disabled account %s\n", acct.ID)
				return s.Audit(ctx, a.actor(), "account.disable", acct.ID, nil)
			})
		})}
	var yes bool
	forget := &cobra.Command{Use: "forget ACCOUNT_ID --yes", Short: "Remove an account's personal data; the audit trail stays, without names or SNILS", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("forgetting account %s removes its personal data for good; repeat with --yes", args[0])
			}
			return withAccount(func(ctx context.Context, s *storage.Store, acct *storage.Account) error {
				return s.InTx(ctx, func(ctx context.Context) error {
					if err := s.ForgetAccount(ctx, acct.ID); err != nil {
						return err
					}
					fmt.Fprintf(a.stdout, "forgot account %s\n", acct.ID)
					return s.Audit(ctx, a.actor(), "account.forget", acct.ID, nil)
				})
			})(cmd, args)
		}}
	forget.Flags().BoolVar(&yes, "yes", false, "confirm")
	var password bool
	children := &cobra.Command{Use: "children --password", Short: "List children's login-and-password sub-accounts, for the schools to help families move to ESIA", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if !password {
				return &exitError{code: 2, err: errors.New("say which children: --password (the login-and-password sub-accounts)")}
			}
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				all, err := s.ChildAccounts(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "SCHOOL\tCLASS\tSTUDENT\tLOGIN\tSTATUS\tOWN ESIA LOGIN")
				for _, c := range all {
					own := "no"
					if c.OwnESIA {
						own = "yes"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\t%s\n", c.SchoolID, c.Class, c.StudentID, c.Login, c.Status, own)
				}
				if err := tw.Flush(); err != nil {
					return err
				}
				fmt.Fprintf(a.stderr, "%d sub-account(s)\n", len(all))
				return nil
			})
		}}
	children.Flags().BoolVar(&password, "password", false, "the login-and-password sub-accounts")
	cmd.AddCommand(show, links, unlink, disable, forget, children)
	return cmd
}

func (a *app) auditCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "audit", Short: "Read the audit log"}
	var n int
	tail := &cobra.Command{Use: "tail", Short: "Show the newest audit events", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if n < 1 || n > 10000 {
				return fmt.Errorf("-n must be between 1 and 10000")
			}
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				ev, err := s.AuditEvents(cmd.Context(), n)
				if err != nil {
					return err
				}
				for i := len(ev) - 1; i >= 0; i-- {
					e := ev[i]
					fmt.Fprintf(a.stdout, "%s  %-28s %-22s %-38s %s\n", e.At.UTC().Format(time.RFC3339), e.Actor, e.Action, e.Target, e.Details)
				}
				return nil
			})
		}}
	tail.Flags().IntVarP(&n, "n", "n", 50, "how many events")
	cmd.AddCommand(tail)
	return cmd
}
