package storage

import (
	"errors"
	"strings"

	"github.com/lib/pq"
	"github.com/lib/pq/pqerror"
	"modernc.org/sqlite"
	sqlite3 "modernc.org/sqlite/lib"
)

// The store tells what a driver error means by its code, never by its text (which differs
// between versions and locales).

// sqliteCode returns the (extended) result code of a SQLite error, 0 for any other error.
func sqliteCode(err error) int {
	var se *sqlite.Error
	if errors.As(err, &se) {
		return se.Code()
	}
	return 0
}

// pqCode returns the SQLSTATE of a PostgreSQL error, "" for any other error.
func pqCode(err error) pqerror.Code {
	var pe *pq.Error
	if errors.As(err, &pe) {
		return pe.Code
	}
	return ""
}

// isUniqueViolation tells whether err is a unique-constraint (or primary-key) violation:
// PostgreSQL 23505, SQLite SQLITE_CONSTRAINT_UNIQUE or _PRIMARYKEY.
func isUniqueViolation(err error) bool {
	if err == nil {
		return false
	}
	if pqCode(err) == pqerror.UniqueViolation {
		return true
	}
	c := sqliteCode(err)
	return c == sqlite3.SQLITE_CONSTRAINT_UNIQUE || c == sqlite3.SQLITE_CONSTRAINT_PRIMARYKEY
}

// IsUnavailable tells whether a driver error means the database cannot serve now, to be tried
// again later: PostgreSQL's connection exceptions (class 08), a server shutting down or
// starting (57P01–57P03), too many connections (53300); SQLite busy or locked. Network errors
// and a bad connection are for the caller to recognise (they are not the driver's codes).
func IsUnavailable(err error) bool {
	if err == nil {
		return false
	}
	if c := pqCode(err); c != "" {
		switch {
		case strings.HasPrefix(string(c), "08"), c == pqerror.AdminShutdown, c == pqerror.CrashShutdown,
			c == pqerror.CannotConnectNow, c == pqerror.TooManyConnections:
			return true
		}
		return false
	}
	switch sqliteCode(err) & 0xff {
	case sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED:
		return true
	}
	return false
}
