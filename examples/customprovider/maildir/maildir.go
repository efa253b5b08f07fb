// Package maildir is a mailsync provider that reads a Maildir directory. It
// is the reference "write your own provider" example: about 200 lines that
// implement mailsync.Connector and pass the connectortest conformance suite.
//
// The connection's protocol is "x-maildir" and its User names the Maildir
// directory. Keys are the Maildir unique names (stable while the file stays
// in the folder). Like POP3, a listing is the whole folder (Complete), so the
// engine's processed-key set does the "what is new" work.
package maildir

import (
	"context"
	"errors"
	"fmt"
	"io"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"time"

	"github.com/mailsync/mailsync"
)

// Protocol is the connection protocol this provider serves.
const Protocol mailsync.Protocol = "x-maildir"

// Connector reads the Maildir at Connection().User.
type Connector struct {
	conn mailsync.Connection
	dir  string
}

var _ mailsync.Connector = (*Connector)(nil)

// New returns a connector for conn, whose User is the Maildir path.
func New(conn mailsync.Connection) (*Connector, error) {
	if err := conn.Validate(); err != nil {
		return nil, err
	}
	if conn.Protocol != Protocol {
		return nil, mailsync.NewConfigError(mailsync.Problem{Field: "protocol", Code: mailsync.CodeConflict, Message: "must be " + string(Protocol)})
	}
	for _, sub := range []string{"cur", "new", "tmp"} {
		if err := os.MkdirAll(filepath.Join(conn.User, sub), 0o700); err != nil {
			return nil, fmt.Errorf("maildir: %w: %v", mailsync.ErrConnection, err)
		}
	}
	return &Connector{conn: conn, dir: conn.User}, nil
}

// Connection implements mailsync.Connector.
func (c *Connector) Connection() mailsync.Connection { return c.conn }

// uniqueName strips the ":2,FLAGS" info part of a Maildir file name.
func uniqueName(file string) string {
	if i := strings.IndexByte(file, ':'); i >= 0 {
		return file[:i]
	}
	return file
}

// find returns the path of the message with key, or "" when it is gone.
func (c *Connector) find(key string) (string, os.FileInfo) {
	for _, sub := range []string{"new", "cur"} {
		entries, _ := os.ReadDir(filepath.Join(c.dir, sub))
		for _, e := range entries {
			if uniqueName(e.Name()) == key {
				p := filepath.Join(c.dir, sub, e.Name())
				if fi, err := os.Stat(p); err == nil {
					return p, fi
				}
			}
		}
	}
	return "", nil
}

// List implements mailsync.Connector: one directory read per sub-folder.
func (c *Connector) List(ctx context.Context, _ mailsync.Cursor) (*mailsync.Listing, error) {
	var refs []mailsync.MessageRef
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(c.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("maildir: %w: %v", mailsync.ErrConnection, err)
		}
		for _, e := range entries {
			if e.IsDir() || strings.HasPrefix(e.Name(), ".") {
				continue
			}
			size := int64(-1)
			if fi, err := e.Info(); err == nil {
				size = fi.Size()
			}
			refs = append(refs, mailsync.MessageRef{Key: uniqueName(e.Name()), Size: size})
		}
	}
	sort.Slice(refs, func(i, j int) bool { return refs[i].Key < refs[j].Key })
	return &mailsync.Listing{Messages: refs, Complete: true}, nil
}

// Fetch implements mailsync.Connector, streaming each file.
func (c *Connector) Fetch(ctx context.Context, refs []mailsync.MessageRef, fn func(mailsync.MessageRef, io.Reader) error) error {
	for _, ref := range refs {
		if err := ctx.Err(); err != nil {
			return err
		}
		path, _ := c.find(ref.Key)
		var f *os.File
		var err error
		if path != "" {
			f, err = os.Open(path)
		}
		if path == "" || errors.Is(err, os.ErrNotExist) {
			// Deleted by another client since List: say so, so Sync records
			// it as gone and the cursor may move past it.
			if err := fn(ref, nil); err != nil {
				return err
			}
			continue
		}
		if err != nil {
			return fmt.Errorf("maildir: %w: %v", mailsync.ErrConnection, err)
		}
		err = fn(ref, f)
		f.Close()
		if err != nil {
			return err
		}
	}
	return nil
}

// Ack implements mailsync.Connector: mark read sets the S flag and moves the
// file to cur/, move renames it into the Maildir++ folder ".<Folder>",
// delete removes it.
func (c *Connector) Ack(ctx context.Context, refs []mailsync.MessageRef, action mailsync.PostAction) error {
	for _, ref := range refs {
		path, _ := c.find(ref.Key)
		if path == "" {
			continue // already moved or deleted: acking again is fine
		}
		var err error
		switch action.Kind {
		case mailsync.LeaveUntouched:
		case mailsync.MarkRead:
			err = os.Rename(path, filepath.Join(c.dir, "cur", ref.Key+":2,"+addFlag(flags(path), 'S')))
		case mailsync.MoveToFolder:
			dst := filepath.Join(c.dir, "."+action.Folder)
			for _, sub := range []string{"cur", "new", "tmp"} {
				if err = os.MkdirAll(filepath.Join(dst, sub), 0o700); err != nil {
					break
				}
			}
			if err == nil {
				err = os.Rename(path, filepath.Join(dst, "cur", filepath.Base(path)))
			}
		case mailsync.Delete:
			err = os.Remove(path)
		default:
			return fmt.Errorf("maildir: %w: action %q", mailsync.ErrUnsupported, action.Kind)
		}
		if err != nil && !errors.Is(err, os.ErrNotExist) {
			return fmt.Errorf("maildir: %s: %w", action.Kind, err)
		}
	}
	return nil
}

// Close implements mailsync.Connector.
func (c *Connector) Close() error { return nil }

func flags(path string) string {
	if _, info, ok := strings.Cut(filepath.Base(path), ":2,"); ok {
		return info
	}
	return ""
}

func addFlag(flags string, f byte) string {
	if strings.IndexByte(flags, f) >= 0 {
		return flags
	}
	b := []byte(flags + string(f))
	sort.Slice(b, func(i, j int) bool { return b[i] < b[j] })
	return string(b)
}

// Check implements mailsync.Checker: the folder exists and is readable;
// messages in new/ are unread, those in cur/ without the S flag too.
func (c *Connector) Check(ctx context.Context) (*mailsync.CheckResult, error) {
	start := time.Now()
	st := mailsync.FolderStatus{Name: c.dir}
	for _, sub := range []string{"new", "cur"} {
		entries, err := os.ReadDir(filepath.Join(c.dir, sub))
		if err != nil {
			return nil, fmt.Errorf("maildir: %w: %v", mailsync.ErrFolderNotFound, err)
		}
		for _, e := range entries {
			st.Messages++
			if _, info, _ := strings.Cut(e.Name(), ":2,"); sub == "new" || !strings.Contains(info, "S") {
				st.Unread++
			}
		}
	}
	return &mailsync.CheckResult{Provider: string(Protocol), Server: "localhost", Security: "local files",
		Folders: []mailsync.FolderStatus{st}, Elapsed: time.Since(start)}, nil
}
