package main

import (
	"fmt"
	"text/tabwriter"
	"time"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/signing"
	"github.com/esia-broker/esia-broker/storage"
)

func (a *app) keySet(cfg *config.Config, s *storage.Store) (*signing.KeySet, error) {
	master, err := config.DecodeSecret(cfg.Secrets.MasterKey)
	if err != nil {
		return nil, fmt.Errorf("secrets.master_key: %w", err)
	}
	overlap := max(cfg.Tokens.AccessTokenLifespan, cfg.Tokens.IDTokenLifespan) + 5*time.Minute
	return signing.NewKeySet(s, signing.KeySetOptions{MasterKey: master, Reload: cfg.Keys.ReloadInterval, Overlap: overlap, PublishBeforeUse: cfg.Keys.PublishBeforeUse})
}

func (a *app) keysCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "keys", Short: "Manage token signing keys"}
	var alg string
	rotate := &cobra.Command{
		Use: "rotate", Short: "Add the next signing key; the previous one stays published until its tokens expire", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			if alg != "RS256" && alg != "ES256" {
				return fmt.Errorf("--alg must be RS256 or ES256, got %q", alg)
			}
			return a.withStore(cmd.Context(), func(cfg *config.Config, s *storage.Store) error {
				ks, err := a.keySet(cfg, s)
				if err != nil {
					return err
				}
				if err := ks.Load(cmd.Context()); err != nil {
					return err
				}
				kid, err := ks.Rotate(cmd.Context(), alg)
				if err != nil {
					return err
				}
				if err := s.Audit(cmd.Context(), a.actor(), "keys.rotate", kid, map[string]any{"alg": alg}); err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "added %s key %s: published now, signs from %s\n", alg, kid, time.Now().Add(cfg.Keys.PublishBeforeUse).UTC().Format(time.RFC3339))
				return nil
			})
		},
	}
	rotate.Flags().StringVar(&alg, "alg", "RS256", "RS256 (ID tokens) or ES256 (access tokens)")
	list := &cobra.Command{
		Use: "list", Short: "List published signing keys", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				ks, err := s.SigningKeys(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "KID\tALG\tSIGNS FROM\tSTOPS SIGNING\tUNPUBLISHED AT")
				for _, k := range ks {
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\t%s\n", k.KID, k.Alg, k.NotBefore.UTC().Format(time.RFC3339), fmtTime(k.RetiredAt), fmtTime(k.ExpiresAt))
				}
				return tw.Flush()
			})
		},
	}
	cmd.AddCommand(rotate, list)
	return cmd
}

func fmtTime(t *time.Time) string {
	if t == nil {
		return "-"
	}
	return t.UTC().Format(time.RFC3339)
}
