package panel_test

import (
	"context"
	"errors"
	"os"
	"path/filepath"
	"strings"
	"testing"

	"github.com/puqcloud/puq-user-operator/internal/panel"
)

// FuzzSQLiteDSN: the name the store gives SQLite for "sqlite://" + path names exactly the file at
// path, as SQLite reads a file: URI (https://www.sqlite.org/uri.html; TestSQLiteOpensTheFileNamed
// checks this reading against SQLite), with exactly the store's pragmas, which the driver reads as
// its parameters; a path SQLite cannot name (empty, or with a NUL byte) is refused, by Open too.
func FuzzSQLiteDSN(f *testing.F) {
	cancelled, cancel := context.WithCancel(context.Background())
	cancel()
	f.Fuzz(func(t *testing.T, path string) {
		name, err := panel.SQLiteName(path)
		_, openErr := panel.Open(cancelled, panel.Options{DSN: "sqlite://" + path})
		if refused := errors.Is(openErr, panel.ErrInvalid); refused != (err != nil) {
			t.Fatalf("SQLiteName error %v, but Open error %v", err, openErr)
		}
		if path == "" || strings.IndexByte(path, 0) >= 0 {
			if err == nil || !errors.Is(err, panel.ErrInvalid) {
				t.Fatalf("SQLiteName(%q) = %q, %v; want ErrInvalid", path, name, err)
			}
			return
		}
		if err != nil {
			t.Fatalf("SQLiteName(%q) refused a path: %v", path, err)
		}
		file, query, err := readSQLiteURI(name)
		if err != nil {
			t.Fatalf("SQLite cannot read %q: %v", name, err)
		}
		if file != path {
			t.Fatalf("SQLiteName(%q) = %q, which names the file %q", path, name, file)
		}
		if query != panel.SQLitePragmas {
			t.Fatalf("SQLiteName(%q) = %q, whose parameters for SQLite are %q, want %q", path, name, query, panel.SQLitePragmas)
		}
		// The driver takes its own parameters (the pragmas) from the first "?".
		if _, driverQuery, _ := strings.Cut(name, "?"); driverQuery != panel.SQLitePragmas {
			t.Fatalf("SQLiteName(%q) = %q, whose parameters for the driver are %q, want %q", path, name, driverQuery,
				panel.SQLitePragmas)
		}
	})
}

// readSQLiteURI reads a file: URI as SQLite does (sqlite.org/uri.html, "URI Format"): after
// "file:", an optional "//" authority that must be empty or "localhost"; the path up to the first
// "?" or "#"; the query up to the first "#"; %HH escapes decoded in both, and a %00 ends the text
// it is in.
func readSQLiteURI(name string) (path, query string, err error) {
	rest, ok := strings.CutPrefix(name, "file:")
	if !ok {
		return "", "", errors.New("not a file: URI")
	}
	if after, ok := strings.CutPrefix(rest, "//"); ok {
		authority, _, _ := strings.Cut(after, "/")
		if authority != "" && authority != "localhost" {
			return "", "", errors.New("invalid uri authority")
		}
		rest = after[len(authority):]
	}
	end := strings.IndexAny(rest, "?#")
	if end < 0 {
		return unescapeSQLite(rest), "", nil
	}
	path = unescapeSQLite(rest[:end])
	if rest[end] == '?' {
		query, _, _ = strings.Cut(rest[end+1:], "#")
	}
	return path, unescapeSQLite(query), nil
}

func unescapeSQLite(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); i++ {
		if s[i] == '%' && i+2 < len(s) && isHex(s[i+1]) && isHex(s[i+2]) {
			c := unhex(s[i+1])<<4 | unhex(s[i+2])
			if c == 0 {
				break
			}
			b.WriteByte(c)
			i += 2
			continue
		}
		b.WriteByte(s[i])
	}
	return b.String()
}

func isHex(c byte) bool {
	return (c >= '0' && c <= '9') || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F')
}

func unhex(c byte) byte {
	switch {
	case c >= 'a':
		return c - 'a' + 10
	case c >= 'A':
		return c - 'A' + 10
	}
	return c - '0'
}

// TestSQLiteOpensTheFileNamed checks readSQLiteURI, the fuzz target's reading of a file: URI,
// against SQLite itself: a store opened on "sqlite://" + path for paths with the characters a URI
// gives a meaning to creates the file at path, and runs with the store's pragmas.
func TestSQLiteOpensTheFileNamed(t *testing.T) {
	dir := t.TempDir()
	for _, base := range []string{"plain.db", "what?.db", "a?_pragma=foreign_keys(0)&x=.db", "hash#tag.db",
		"100%.db", "percent%25.db", "null%00byte.db", "space d.db", "zażółć.db"} {
		t.Run(base, func(t *testing.T) {
			sub := filepath.Join(dir, strings.NewReplacer("?", "_", "#", "_", "%", "_").Replace(base))
			if err := os.Mkdir(sub, 0o700); err != nil {
				t.Fatal(err)
			}
			for _, path := range []string{filepath.Join(sub, base), "/" + filepath.Join(sub, base)} {
				name, err := panel.SQLiteName(path)
				if err != nil {
					t.Fatal(err)
				}
				if file, _, err := readSQLiteURI(name); err != nil || file != path {
					t.Fatalf("readSQLiteURI(%q) = %q, %v; want %q", name, file, err, path)
				}
				s, err := panel.Open(context.Background(), panel.Options{DSN: "sqlite://" + path})
				if err != nil {
					t.Fatalf("open %q: %v", path, err)
				}
				var seq int
				var schema, file string
				if err := s.DB().QueryRow("PRAGMA database_list").Scan(&seq, &schema, &file); err != nil {
					t.Fatal(err)
				}
				var foreignKeys int
				var journal string
				if err := s.DB().QueryRow("PRAGMA foreign_keys").Scan(&foreignKeys); err != nil {
					t.Fatal(err)
				}
				if err := s.DB().QueryRow("PRAGMA journal_mode").Scan(&journal); err != nil {
					t.Fatal(err)
				}
				_ = s.Close()
				if file != filepath.Clean(path) || foreignKeys != 1 || journal != "wal" {
					t.Errorf("sqlite://%s opened %q with foreign_keys=%d, journal_mode=%s; want %q, 1, wal",
						path, file, foreignKeys, journal, filepath.Clean(path))
				}
				entries, _ := os.ReadDir(sub)
				if _, err := os.Stat(path); err != nil {
					t.Errorf("sqlite://%s created no file there; the directory holds %v", path, names(entries))
				}
				_ = os.RemoveAll(sub)
				_ = os.Mkdir(sub, 0o700)
			}
		})
	}
}

func names(entries []os.DirEntry) []string {
	out := make([]string, 0, len(entries))
	for _, e := range entries {
		out = append(out, e.Name())
	}
	return out
}
