// Package migrations embeds the SQL schema of both dialects. Files are named NNNN_name.sql and
// applied in order, each in its own transaction.
package migrations

import "embed"

// Postgres holds the PostgreSQL migrations under postgres/.
//
//go:embed postgres/*.sql
var Postgres embed.FS

// SQLite holds the SQLite migrations under sqlite/.
//
//go:embed sqlite/*.sql
var SQLite embed.FS
