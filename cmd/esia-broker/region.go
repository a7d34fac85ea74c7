package main

import (
	"context"
	"encoding/csv"
	"errors"
	"fmt"
	"io"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/broker"
	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/linking"
	"github.com/esia-broker/esia-broker/regionimport"
	"github.com/esia-broker/esia-broker/storage"
)

// Moving a region onto the broker (docs/MIGRATION.md): `links import`, `children import` and
// `migrate report`.

// importFileCmd makes `links import` and `children import`, which differ in what they call.
func (a *app) importFileCmd(use, short, long string, run func(ctx context.Context, im *regionimport.Importer, f io.Reader, o regionimport.ImportFileOptions) (*regionimport.FileImportReport, error), weak bool) *cobra.Command {
	var o regionimport.ImportFileOptions
	var upstreamFlag string
	cmd := &cobra.Command{
		Use: use, Short: short, Long: long, Args: cobra.ExactArgs(1),
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
				link.SetChildOptions(broker.ChildOptions(cfg))
				switch {
				case upstreamFlag == "" && !cfg.Upstream.ESIA.Enabled && cfg.Upstream.OIDC.Enabled:
					o.Upstream = "oidc" // a gateway to ESIA: its accounts are known by that connector
				case upstreamFlag == "" || upstreamFlag == "esia":
					o.Upstream = "esia"
				case upstreamFlag == "oidc":
					o.Upstream = "oidc"
				default:
					return fmt.Errorf("--upstream %q: esia or oidc (the connector the ESIA oids are of)", upstreamFlag)
				}
				o.Operator = a.actor()
				o.Progress = func(pass string, done, total int) { progress(a.stderr, pass)(done, total) }
				start := time.Now()
				rep, err := run(cmd.Context(), regionimport.New(s, link), f, o)
				if errors.Is(err, linking.ErrPasswordAccountsOff) {
					return errors.New("children.password_accounts is false in this region: there are no login-and-password sub-accounts to import")
				}
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
					fmt.Fprintf(a.stdout, "%s: %d rows: %d created, %d unchanged, %d skipped", verb, rep.Rows, rep.Created, rep.Unchanged, rep.Skipped)
					if !weak {
						fmt.Fprintf(a.stdout, "; %d new account(s) waiting for their first login", rep.Accounts)
					} else {
						var fs []string
						for k, v := range rep.Formats {
							fs = append(fs, fmt.Sprintf("%s %d", k, v))
						}
						slices.Sort(fs)
						if len(fs) > 0 {
							fmt.Fprintf(a.stdout, "; hashes: %s", strings.Join(fs, ", "))
						}
						if rep.Weak > 0 {
							fmt.Fprintf(a.stdout, "; %d weak hashes accepted (--accept-weak), replaced at each child's first login", rep.Weak)
						}
					}
					fmt.Fprintf(a.stdout, " (%s)\n", time.Since(start).Round(time.Millisecond))
				}
				if errors.Is(err, linking.ErrInvalidRows) {
					return fmt.Errorf("%s in %s; nothing was imported (fix them, or use --skip-invalid to import the good rows)", problems(len(rep.Errors)), args[0])
				}
				return err
			})
		},
	}
	cmd.Flags().BoolVar(&o.DryRun, "dry-run", false, "check and count, write nothing")
	cmd.Flags().BoolVar(&o.SkipInvalid, "skip-invalid", false, "import the good rows and report the bad ones")
	cmd.Flags().StringVar(&o.Format, "format", "", "csv or jsonl (default: from the content)")
	cmd.Flags().StringVar(&upstreamFlag, "upstream", "", "the connector the ESIA oids are of: esia, or oidc for a gateway to ESIA (default: esia, or oidc when only it is enabled)")
	if weak {
		cmd.Flags().BoolVar(&o.AcceptWeak, "accept-weak", false, "accept weak hashes: unsalted MD5/SHA-1/SHA-256, bcrypt under cost 8, PBKDF2 under 10,000 iterations, small argon2id (replaced at first login)")
	}
	return cmd
}

func (a *app) linksCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "links", Short: "Bring over the links of a region's earlier system"}
	cmd.AddCommand(a.importFileCmd("import FILE", "Import links by ESIA oid (the whole file or nothing)",
		"CSV with a header, or JSON lines of strings: "+strings.Join(regionimport.LinkColumns, ", ")+".\n"+
			"relation is parent or self; linked_at a date (YYYY-MM-DD, DD.MM.YYYY) or RFC 3339 time; method (optional)\n"+
			"is what the earlier system called it, kept in the audit. The roster must be imported first.\n"+
			"An account the broker has not seen waits for its first ESIA login; its links are then checked\n"+
			"(a parent must be an adult, the student's own account must match the card's birth date).\n"+
			"Running the same file again changes nothing.",
		func(ctx context.Context, im *regionimport.Importer, f io.Reader, o regionimport.ImportFileOptions) (*regionimport.FileImportReport, error) {
			return im.ImportLinks(ctx, f, o)
		}, false))
	return cmd
}

func (a *app) childrenCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "children", Short: "Bring over the children's logins of a region's earlier system"}
	cmd.AddCommand(a.importFileCmd("import FILE", "Import children's logins with their password hashes (the whole file or nothing)",
		"CSV with a header, or JSON lines of strings: "+strings.Join(regionimport.ChildColumns, ", ")+".\n"+
			"Hashes: bcrypt ($2a$/$2b$/$2y$), argon2id (PHC), PBKDF2 (PHC $pbkdf2-sha256$i=…, passlib\n"+
			"$pbkdf2-sha256$N$…, Django pbkdf2_sha256$N$…), their cost bounded (bcrypt ≤ 12, PBKDF2 ≤ 1,000,000,\n"+
			"argon2id memory ≤ the broker's own); weak ones (unsalted MD5/SHA-1 hex, cheap costs) only with --accept-weak.\n"+
			"Each is replaced by argon2id at the child's first successful login. Logins keep their form,\n"+
			"case-insensitive. The guardian's ESIA account must be linked to the student as a parent:\n"+
			"import the links first.",
		func(ctx context.Context, im *regionimport.Importer, f io.Reader, o regionimport.ImportFileOptions) (*regionimport.FileImportReport, error) {
			return im.ImportChildren(ctx, f, o)
		}, true))
	return cmd
}

// migrateReportCmd writes what the imports left, and the families who will need a code.
func (a *app) migrateReportCmd() *cobra.Command {
	var out string
	cmd := &cobra.Command{
		Use: "report", Short: "After the imports: what waits for a first login, and the families who will need an invite code", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			w := a.stdout
			if out != "" {
				f, err := os.OpenFile(out, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
				if errors.Is(err, os.ErrExist) {
					return fmt.Errorf("%s exists: the report never overwrites a file; give another name", out)
				}
				if err != nil {
					return err
				}
				defer f.Close()
				w = f
			}
			err := a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				c, fams, err := s.MigrationReport(cmd.Context())
				if err != nil {
					return err
				}
				methods := make([]string, 0, len(c.LinksByMethod))
				for m, n := range c.LinksByMethod {
					methods = append(methods, fmt.Sprintf("%s %d", m, n))
				}
				slices.Sort(methods)
				pending := 0
				for _, f := range fams {
					if f.Pending {
						pending++
					}
				}
				fmt.Fprintf(a.stderr, "accounts waiting for their first login: %d\nactive links by method: %s\nchildren's logins imported: %d (%d still with an imported hash)\nactive cards whose families need a code: %d, and %d more if the first login refuses their imported link\n",
					c.AwaitingAccounts, strings.Join(methods, ", "), c.ImportedChildren, c.NotRehashed, len(fams)-pending, pending)
				cw := csv.NewWriter(w)
				if err := cw.Write([]string{"school_id", "class", "student_id", "student", "needs"}); err != nil {
					return fmt.Errorf("write the report: %w", err)
				}
				for _, f := range fams {
					needs := "invite code (no guardian SNILS on the card, no parent link)"
					if f.Pending {
						needs = "none yet: the imported parent link waits for the parent's first ESIA login (an invite code if that login refuses it)"
					}
					if err := cw.Write([]string{f.SchoolID, f.Class, f.StudentID, storage.FullName(f.Family, f.Given, f.Middle), needs}); err != nil {
						return fmt.Errorf("write the report: %w", err)
					}
				}
				cw.Flush()
				if err := cw.Error(); err != nil {
					return fmt.Errorf("write the report: %w", err)
				}
				if out != "" {
					fmt.Fprintf(a.stderr, "wrote %s\n", out)
				}
				return nil
			})
			if err != nil && out != "" {
				_ = os.Remove(out) // no half-written report is left behind
			}
			return err
		},
	}
	cmd.Flags().StringVarP(&out, "out", "o", "", "write the CSV to this new file (default: standard output)")
	return cmd
}
