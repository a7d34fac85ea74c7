package main

import (
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/storage"
)

func (a *app) secretsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "secrets", Short: "Check the secrets against the database, accept a deliberately rotated cookie or token key"}
	check := &cobra.Command{
		Use: "check", Short: "Check that the configured secrets are the ones the database was first used with", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			// Read only: a check records nothing, not even on an empty database.
			ctx := cmd.Context()
			return a.withCurrentStore(ctx, func(cfg *config.Config, s *storage.Store) error {
				err := verifySecrets(ctx, cfg, s, storage.RecordNever)
				var unrecorded *storage.SecretsUnrecordedError
				if errors.As(err, &unrecorded) {
					if empty, eerr := s.IsEmpty(ctx); eerr == nil && empty {
						fmt.Fprintln(a.stdout, "the database holds no data yet: its first use (serve, dev or an admin command) records these secrets")
						return nil
					}
				}
				if err != nil {
					return err
				}
				fmt.Fprintln(a.stdout, "the secrets are the ones this database was first used with")
				return nil
			})
		},
	}
	accept := &cobra.Command{
		Use:   "accept NAME...",
		Short: "Record a new secrets.cookie_key or secrets.token_key after rotating it on purpose (every session, or every token, ends)",
		Long: `accept records the fingerprint of the configured secret in place of the earlier one. Only the
cookie key (sessions end) and the token key (issued tokens stop working) can be rotated: the master
key encrypts the signing keys and the SNILS pepper keys every stored digest and invite code.
NAME is cookie_key, token_key or their full keys secrets.cookie_key, secrets.token_key.`,
		Args: cobra.MinimumNArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			var names []string
			for _, n := range args {
				if !strings.HasPrefix(n, "secrets.") {
					n = "secrets." + n
				}
				if !config.SecretRotatable(n) {
					return &exitError{code: 2, err: fmt.Errorf("%s cannot be accepted: only secrets.cookie_key and secrets.token_key can be rotated (the stored data depends on the others)", n)}
				}
				names = append(names, n)
			}
			ctx := cmd.Context()
			return a.withCurrentStore(ctx, func(cfg *config.Config, s *storage.Store) error {
				fps := cfg.SecretFingerprints()
				err := s.VerifySecrets(ctx, fps, storage.RecordNever, cfg.LegacySecretFingerprints())
				var differ []string
				var de *storage.SecretsDifferError
				switch {
				case errors.As(err, &de):
					differ = de.Names
				case err != nil:
					return &exitError{code: 2, err: err}
				}
				for _, d := range differ {
					if !slices.Contains(names, d) {
						return &exitError{code: 2, err: fmt.Errorf("%s also differs from the one this database was first used with and is not accepted: nothing was changed", d)}
					}
				}
				for _, n := range names {
					if !slices.Contains(differ, n) {
						fmt.Fprintf(a.stdout, "%s: unchanged\n", n)
						continue
					}
					err := s.InTx(ctx, func(ctx context.Context) error {
						if err := s.ReplaceSecretFingerprint(ctx, n, fps[n]); err != nil {
							return err
						}
						return s.Audit(ctx, a.actor(), "secrets.accept", n, nil)
					})
					if err != nil {
						return fmt.Errorf("accept %s: %w", n, err)
					}
					fmt.Fprintf(a.stdout, "%s: the new secret is accepted\n", n)
				}
				return nil
			})
		},
	}
	cmd.AddCommand(check, accept)
	return cmd
}
