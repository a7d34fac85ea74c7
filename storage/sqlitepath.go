package storage

import "strings"

// SQLitePath returns the file of an embedded-store DSN.
func SQLitePath(dsn string) (string, bool) {
	if dsn != "" && !strings.HasPrefix(dsn, "sqlite:") {
		return "", false
	}
	path := strings.TrimPrefix(dsn, "sqlite:")
	if path == "" {
		path = DefaultSQLitePath
	}
	if i := strings.IndexByte(path, '?'); i >= 0 {
		path = path[:i]
	}
	return strings.TrimPrefix(path, "file:"), true
}
