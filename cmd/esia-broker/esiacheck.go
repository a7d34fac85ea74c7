package main

import (
	"errors"
	"fmt"

	"github.com/esia-broker/esia-broker/connectors"
	"github.com/spf13/cobra"
)

func (a *app) esiaCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "esia", Short: "The direct ESIA connection"}
	var online bool
	check := &cobra.Command{
		Use:   "check",
		Short: "Check the ESIA key, certificates and signer, and print the certificate hash ESIA asks for",
		Long: `Check the direct ESIA connection as configured (upstream.esia): that the key and the
certificate match, the certificate hash to enter on ESIA's technology portal, a signed sample
/aas/oauth2/v2/ac request whose client_secret verifies, ESIA's certificates and their expiry,
and the redirect URIs to register. With --online the sample request is sent to ESIA and its
answer explained. Exits 1 when something is wrong.`,
		Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			cfg, err := a.loadAdminConfig()
			if err != nil {
				return err
			}
			if !cfg.Upstream.ESIA.Enabled {
				return &exitError{code: 2, err: errors.New("upstream.esia.enabled is false: there is no ESIA connection to check")}
			}
			if failed := connectors.CheckESIA(cmd.Context(), cfg, online, a.stdout); failed > 0 {
				return &exitError{code: 1, err: fmt.Errorf("esia check: %d problem(s) found", failed)}
			}
			fmt.Fprintln(a.stdout, "everything checked is in order")
			return nil
		},
	}
	check.Flags().BoolVar(&online, "online", false, "also send the signed sample request to ESIA and explain its answer")
	cmd.AddCommand(check)
	return cmd
}
