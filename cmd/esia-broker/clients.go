package main

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"os"
	"strings"
	"text/tabwriter"

	"github.com/spf13/cobra"

	"github.com/esia-broker/esia-broker/config"
	"github.com/esia-broker/esia-broker/provider"
	"github.com/esia-broker/esia-broker/storage"
)

type clientFlags struct {
	name         string
	redirects    []string
	postLogouts  []string
	grants       []string
	scopes       []string
	public       bool
	idTokenAlg   string
	homeURL      string
	backchannel  string
	frontchannel string
	authMethod   string
	jwksFile     string
	requirePAR   bool
}

func (f *clientFlags) bind(cmd *cobra.Command, defaults bool) {
	fl := cmd.Flags()
	fl.StringVar(&f.name, "name", "", "human-readable name")
	fl.StringSliceVar(&f.redirects, "redirect-uri", nil, "allowed redirect URI, exact match (repeat or comma-separate)")
	fl.StringSliceVar(&f.postLogouts, "post-logout-redirect-uri", nil, "allowed post-logout redirect URI, exact match")
	grants, scopes := []string(nil), []string(nil)
	if defaults {
		grants, scopes = []string{"authorization_code", "refresh_token"}, []string{"openid", "profile", "offline_access"}
	}
	fl.StringSliceVar(&f.grants, "grant-type", grants, "allowed grant types: authorization_code, refresh_token, client_credentials")
	fl.StringSliceVar(&f.scopes, "scope", scopes, "allowed scopes")
	fl.BoolVar(&f.public, "public", false, "public client (no secret; PKCE required), e.g. a mobile app")
	fl.StringVar(&f.idTokenAlg, "id-token-alg", "", "ID token signing alg for this client: RS256 or ES256 (default: tokens.id_token_alg)")
	fl.StringVar(&f.homeURL, "home-url", "", "the diary's own page (https), listed with --name on the broker's start page")
	fl.StringVar(&f.backchannel, "backchannel-logout-uri", "", "where the broker POSTs a signed logout token when a session of the diary's user ends (Back-Channel Logout 1.0; https)")
	fl.StringVar(&f.frontchannel, "frontchannel-logout-uri", "", "the diary's page the broker loads in a hidden frame at logout, with iss and sid (Front-Channel Logout 1.0; https)")
	fl.StringVar(&f.authMethod, "token-endpoint-auth-method", "", "client_secret_basic, client_secret_post or private_key_jwt (with --jwks); none for --public; default: basic or post")
	fl.StringVar(&f.jwksFile, "jwks", "", "file with the client's public keys (a JWK Set) for private_key_jwt; \"\" clears")
	fl.BoolVar(&f.requirePAR, "require-par", false, "accept authorization requests only through a pushed request (RFC 9126)")
}

// apply copies the flags the user set onto c.
func (f *clientFlags) apply(cmd *cobra.Command, c *storage.Client) error {
	ch := cmd.Flags().Changed
	if ch("name") {
		c.Name = f.name
	}
	if ch("redirect-uri") {
		c.RedirectURIs = f.redirects
	}
	if ch("post-logout-redirect-uri") {
		c.PostLogoutRedirectURIs = f.postLogouts
	}
	if ch("grant-type") || c.GrantTypes == nil {
		c.GrantTypes = f.grants
	}
	if ch("scope") || c.Scopes == nil {
		c.Scopes = f.scopes
	}
	if ch("public") {
		c.Public = f.public
	}
	if ch("id-token-alg") {
		c.IDTokenAlg = f.idTokenAlg
	}
	if ch("home-url") {
		c.HomeURL = f.homeURL
	}
	if ch("backchannel-logout-uri") {
		c.BackchannelLogoutURI = f.backchannel
	}
	if ch("frontchannel-logout-uri") {
		c.FrontchannelLogoutURI = f.frontchannel
	}
	if ch("token-endpoint-auth-method") {
		c.TokenEndpointAuthMethod = f.authMethod
	}
	if ch("require-par") {
		c.RequirePAR = f.requirePAR
	}
	if ch("jwks") {
		c.JWKS = ""
		if f.jwksFile != "" {
			b, err := os.ReadFile(f.jwksFile)
			if err != nil {
				return fmt.Errorf("--jwks: %w", err)
			}
			c.JWKS = strings.TrimSpace(string(b))
		}
	}
	c.ResponseTypes = nil
	for _, g := range c.GrantTypes {
		if g == "authorization_code" {
			c.ResponseTypes = []string{"code"}
		}
	}
	return nil
}

func (a *app) clientsCmd() *cobra.Command {
	cmd := &cobra.Command{Use: "clients", Short: "Register and manage relying parties (diaries, apps)"}

	var cf clientFlags
	create := &cobra.Command{
		Use: "create ID", Short: "Register a client; its secret is printed once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				c := &storage.Client{ID: args[0]}
				if err := cf.apply(cmd, c); err != nil {
					return err
				}
				if err := provider.ValidateClient(c); err != nil {
					return err
				}
				var secret string
				if !c.Public && c.TokenEndpointAuthMethod != "private_key_jwt" {
					var err error
					if secret, c.SecretHash, err = provider.NewClientSecret(); err != nil {
						return err
					}
				}
				err := s.InTx(cmd.Context(), func(ctx context.Context) error {
					if err := s.CreateClient(ctx, c); err != nil {
						return err
					}
					return s.Audit(ctx, a.actor(), "client.create", c.ID, map[string]any{"public": c.Public, "grant_types": c.GrantTypes, "scopes": c.Scopes})
				})
				if errors.Is(err, storage.ErrConflict) {
					return fmt.Errorf("client %q already exists (use `clients update` or `clients rotate-secret`)", c.ID)
				}
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "created client %s\n", c.ID)
				if secret != "" {
					fmt.Fprintf(a.stdout, "client_secret: %s\n(shown once: it is stored only as a hash)\n", secret)
				}
				return nil
			})
		},
	}
	cf.bind(create, true)

	var uf clientFlags
	update := &cobra.Command{
		Use: "update ID", Short: "Change a client's settings (only the flags given)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				c, err := s.Client(cmd.Context(), args[0])
				if err != nil {
					return notFound(args[0], err)
				}
				wasPublic := c.Public
				if err := uf.apply(cmd, c); err != nil {
					return err
				}
				if err := provider.ValidateClient(c); err != nil {
					return err
				}
				if c.TokenEndpointAuthMethod == "private_key_jwt" {
					c.SecretHash = "" // keys, not a secret: a secret left over would be a second way in
				}
				var secret string
				if !c.Public && c.TokenEndpointAuthMethod != "private_key_jwt" && (wasPublic || c.SecretHash == "") {
					if secret, c.SecretHash, err = provider.NewClientSecret(); err != nil {
						return err
					}
				} else if c.Public {
					c.SecretHash = ""
				}
				err = s.InTx(cmd.Context(), func(ctx context.Context) error {
					if err := s.UpdateClient(ctx, c); err != nil {
						return err
					}
					return s.Audit(ctx, a.actor(), "client.update", c.ID, map[string]any{"public": c.Public, "grant_types": c.GrantTypes, "scopes": c.Scopes})
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "updated client %s\n", c.ID)
				if secret != "" {
					fmt.Fprintf(a.stdout, "client_secret: %s\n(shown once: it is stored only as a hash)\n", secret)
				}
				return nil
			})
		},
	}
	uf.bind(update, false)

	list := &cobra.Command{
		Use: "list", Short: "List clients", Args: cobra.NoArgs,
		RunE: func(cmd *cobra.Command, _ []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				cs, err := s.Clients(cmd.Context())
				if err != nil {
					return err
				}
				tw := tabwriter.NewWriter(a.stdout, 0, 4, 2, ' ', 0)
				fmt.Fprintln(tw, "ID\tTYPE\tGRANTS\tNAME")
				for _, c := range cs {
					kind := "confidential"
					if c.Public {
						kind = "public"
					}
					fmt.Fprintf(tw, "%s\t%s\t%s\t%s\n", c.ID, kind, strings.Join(c.GrantTypes, ","), c.Name)
				}
				return tw.Flush()
			})
		},
	}

	show := &cobra.Command{
		Use: "show ID", Short: "Show one client as JSON (never the secret)", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				c, err := s.Client(cmd.Context(), args[0])
				if err != nil {
					return notFound(args[0], err)
				}
				out := map[string]any{
					"id": c.ID, "name": c.Name, "public": c.Public, "redirect_uris": c.RedirectURIs,
					"post_logout_redirect_uris": c.PostLogoutRedirectURIs, "grant_types": c.GrantTypes,
					"scopes": c.Scopes, "id_token_alg": c.IDTokenAlg, "home_url": c.HomeURL, "created_at": c.CreatedAt, "updated_at": c.UpdatedAt,
					"backchannel_logout_uri": c.BackchannelLogoutURI, "frontchannel_logout_uri": c.FrontchannelLogoutURI,
					"token_endpoint_auth_method": c.TokenEndpointAuthMethod, "jwks": json.RawMessage(orNull(c.JWKS)), "require_pushed_authorization_requests": c.RequirePAR,
				}
				enc := json.NewEncoder(a.stdout)
				enc.SetIndent("", "  ")
				return enc.Encode(out)
			})
		},
	}

	rotate := &cobra.Command{
		Use: "rotate-secret ID", Short: "Replace a confidential client's secret; the new one is printed once", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				c, err := s.Client(cmd.Context(), args[0])
				if err != nil {
					return notFound(args[0], err)
				}
				if c.Public {
					return fmt.Errorf("client %q is public and has no secret", c.ID)
				}
				secret, hash, err := provider.NewClientSecret()
				if err != nil {
					return err
				}
				c.SecretHash = hash
				err = s.InTx(cmd.Context(), func(ctx context.Context) error {
					if err := s.UpdateClient(ctx, c); err != nil {
						return err
					}
					return s.Audit(ctx, a.actor(), "client.rotate_secret", c.ID, nil)
				})
				if err != nil {
					return err
				}
				fmt.Fprintf(a.stdout, "client_secret: %s\n(shown once: the old secret no longer works)\n", secret)
				return nil
			})
		},
	}

	var yes bool
	del := &cobra.Command{
		Use: "delete ID", Short: "Remove a client and every token issued to it", Args: cobra.ExactArgs(1),
		RunE: func(cmd *cobra.Command, args []string) error {
			if !yes {
				return fmt.Errorf("deleting client %q revokes every token issued to it; repeat with --yes to confirm", args[0])
			}
			return a.withStore(cmd.Context(), func(_ *config.Config, s *storage.Store) error {
				err := s.InTx(cmd.Context(), func(ctx context.Context) error {
					if err := s.DeleteClient(ctx, args[0]); err != nil {
						return err
					}
					return s.Audit(ctx, a.actor(), "client.delete", args[0], nil)
				})
				if err != nil {
					return notFound(args[0], err)
				}
				fmt.Fprintf(a.stdout, "deleted client %s\n", args[0])
				return nil
			})
		},
	}
	del.Flags().BoolVar(&yes, "yes", false, "confirm the deletion")

	cmd.AddCommand(create, update, list, show, rotate, del)
	return cmd
}

func notFound(id string, err error) error {
	if errors.Is(err, storage.ErrNotFound) {
		return fmt.Errorf("no client %q", id)
	}
	return err
}

func orNull(s string) string {
	if s == "" {
		return "null"
	}
	return s
}
