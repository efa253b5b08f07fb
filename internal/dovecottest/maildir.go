package dovecottest

import (
	"bufio"
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"net/mail"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"
	"time"
)

// Message is one message file found in a user's Maildir.
type Message struct {
	// Folder is the folder name as passed to Messages.
	Folder string
	// MessageID is the Message-ID header without angle brackets ("" if
	// missing).
	MessageID string
	// Seen is true when the file has the S (\Seen) Maildir flag.
	Seen bool
	// Deleted is true when the file has the T (\Deleted) Maildir flag.
	Deleted bool
	// Path is the file's path.
	Path string
}

// AddUser creates a user with a password and an empty Maildir and returns the
// login name. The name is lower-cased and characters other than
// [a-z0-9._@+-] are replaced by '-' (so t.Name() works); if the login is
// already taken on this server a "-2", "-3"… suffix makes it unique, so tests
// can share one server (also under -count=N).
func (s *Server) AddUser(t testing.TB, name, password string) string {
	t.Helper()
	if password == "" || strings.ContainsAny(password, ":\r\n\x00") {
		t.Fatalf("dovecottest: AddUser: password must be non-empty and contain no ':', CR, LF or NUL")
	}
	base := sanitizeUser(name)
	s.mu.Lock()
	defer s.mu.Unlock()
	login := base
	for i := 2; ; i++ {
		if _, taken := s.users[login]; !taken {
			break
		}
		login = fmt.Sprintf("%s-%d", base, i)
	}
	if err := s.makeHome(login); err != nil {
		t.Fatalf("dovecottest: AddUser: %v", err)
	}
	if err := s.writeUserFile(login, password); err != nil {
		t.Fatalf("dovecottest: AddUser: %v", err)
	}
	s.users[login] = password
	return login
}

func sanitizeUser(name string) string {
	var b strings.Builder
	for _, r := range strings.ToLower(name) {
		switch {
		case r >= 'a' && r <= 'z', r >= '0' && r <= '9', r == '.', r == '_', r == '@', r == '+', r == '-':
			b.WriteRune(r)
		default:
			b.WriteByte('-')
		}
	}
	login := strings.Trim(b.String(), "-.")
	if len(login) > 80 {
		login = strings.Trim(login[:80], "-.")
	}
	if login == "" || login == probeUser {
		login = "user"
	}
	return login
}

// writeUserFile writes the user's own passwd-file (one line) atomically.
// One file per user, because Dovecot re-reads a changed passwd-file at most
// once a second, while a new file is read at its first lookup.
func (s *Server) writeUserFile(user, password string) error {
	line := fmt.Sprintf("%s:{PLAIN}%s:%d:%d::%s::\n", user, password, s.mailUID, s.mailGID, s.home(user))
	path := filepath.Join(s.Dir, "passwd.d", user)
	tmp := filepath.Join(s.Dir, "passwd.d", ".tmp-"+user)
	if err := os.WriteFile(tmp, []byte(line), 0o644); err != nil {
		return err
	}
	return os.Rename(tmp, path)
}

func (s *Server) home(user string) string { return filepath.Join(s.Dir, "home", user) }

// makeHome creates the user's home and Maildir, owned by the mail uid.
func (s *Server) makeHome(user string) error {
	home := s.home(user)
	if err := os.Mkdir(home, 0o700); err != nil {
		return err
	}
	if err := s.chown(home); err != nil {
		return err
	}
	return s.makeMaildir(filepath.Join(home, "Maildir"))
}

func (s *Server) makeMaildir(dir string) error {
	for _, d := range []string{dir, filepath.Join(dir, "cur"), filepath.Join(dir, "new"), filepath.Join(dir, "tmp")} {
		if err := os.Mkdir(d, 0o700); err != nil && !os.IsExist(err) {
			return err
		}
		if err := s.chown(d); err != nil {
			return err
		}
	}
	return nil
}

func (s *Server) chown(path string) error {
	if !s.asRoot {
		return nil
	}
	return os.Lchown(path, s.mailUID, s.mailGID)
}

// folderDir maps a folder name to its Maildir++ directory: "" and "INBOX"
// are the Maildir itself, "Name" is Maildir/.Name, and hierarchy ("A/B" or
// "A.B") is Maildir/.A.B.
func (s *Server) folderDir(t testing.TB, user, folder string) string {
	t.Helper()
	s.mu.Lock()
	_, ok := s.users[user]
	s.mu.Unlock()
	if !ok {
		t.Fatalf("dovecottest: unknown user %q", user)
	}
	root := filepath.Join(s.home(user), "Maildir")
	if folder == "" || strings.EqualFold(folder, "INBOX") {
		return root
	}
	if strings.ContainsAny(folder, "\x00") || strings.HasPrefix(folder, ".") || strings.Contains(folder, "..") {
		t.Fatalf("dovecottest: bad folder name %q", folder)
	}
	return filepath.Join(root, "."+strings.ReplaceAll(folder, "/", "."))
}

// Deliver writes raw into the user's Maildir folder ("" or "INBOX" = INBOX,
// otherwise the Maildir++ folder ".Name", created if needed) — into tmp/,
// then renamed into new/. IMAP shows folders with Dovecot's Maildir++
// separator ".": folder "Archive/2026" (or "Archive.2026") is the directory
// ".Archive.2026" and the IMAP mailbox "Archive.2026". Delivery order is
// Dovecot's UID order: file names carry strictly increasing timestamps.
func (s *Server) Deliver(t testing.TB, user, folder string, raw []byte) {
	t.Helper()
	dir := s.folderDir(t, user, folder)
	if err := s.makeMaildir(dir); err != nil {
		t.Fatalf("dovecottest: Deliver: %v", err)
	}
	if dir != filepath.Join(s.home(user), "Maildir") {
		// Dovecot marks its Maildir++ folders so; do the same.
		mf := filepath.Join(dir, "maildirfolder")
		if _, err := os.Stat(mf); os.IsNotExist(err) {
			if err := os.WriteFile(mf, nil, 0o600); err != nil {
				t.Fatalf("dovecottest: Deliver: %v", err)
			}
			if err := s.chown(mf); err != nil {
				t.Fatalf("dovecottest: Deliver: %v", err)
			}
		}
	}
	s.mu.Lock()
	now := time.Now().Truncate(time.Microsecond)
	if !now.After(s.lastDeliv) {
		now = s.lastDeliv.Add(time.Microsecond)
	}
	s.lastDeliv = now
	s.seq++
	seq := s.seq
	s.mu.Unlock()
	var rnd [4]byte
	_, _ = rand.Read(rnd[:])
	name := fmt.Sprintf("%d.M%06dP%dQ%d.dovecottest%s,S=%d", now.Unix(), now.Nanosecond()/1000, os.Getpid(), seq, hex.EncodeToString(rnd[:]), len(raw))
	tmp := filepath.Join(dir, "tmp", name)
	if err := os.WriteFile(tmp, raw, 0o600); err != nil {
		t.Fatalf("dovecottest: Deliver: %v", err)
	}
	if err := s.chown(tmp); err != nil {
		t.Fatalf("dovecottest: Deliver: %v", err)
	}
	// Keep the file's mtime (Dovecot's INTERNALDATE) in delivery order.
	_ = os.Chtimes(tmp, now, now)
	if err := os.Rename(tmp, filepath.Join(dir, "new", name)); err != nil {
		t.Fatalf("dovecottest: Deliver: %v", err)
	}
}

// Messages lists the user's messages in a folder ("" or "INBOX" = INBOX)
// with their Maildir flags and Message-ID, ordered by file name (delivery
// order). Messages flagged \Deleted but not yet expunged are included with
// Deleted set. A folder that does not exist has no messages.
func (s *Server) Messages(t testing.TB, user, folder string) []Message {
	t.Helper()
	dir := s.folderDir(t, user, folder)
	// Dovecot renames files (new/ -> cur/, flag changes) while we look: list
	// new/ before cur/, deduplicate, and start over if a file vanished.
	for attempt := 0; ; attempt++ {
		msgs, vanished, err := listMaildir(dir, folder)
		if err != nil {
			t.Fatalf("dovecottest: Messages: %v", err)
		}
		if !vanished || attempt == 20 {
			return msgs
		}
		time.Sleep(5 * time.Millisecond)
	}
}

func listMaildir(dir, folder string) (msgs []Message, vanished bool, err error) {
	type entry struct{ base, path, flags string }
	byBase := make(map[string]entry)
	for _, sub := range []string{"new", "cur"} {
		des, err := os.ReadDir(filepath.Join(dir, sub))
		if os.IsNotExist(err) {
			continue
		}
		if err != nil {
			return nil, false, err
		}
		for _, de := range des {
			if de.IsDir() || strings.HasPrefix(de.Name(), ".") {
				continue
			}
			name, flags := de.Name(), ""
			if i := strings.LastIndex(name, ":2,"); i >= 0 {
				name, flags = name[:i], name[i+3:]
			}
			byBase[name] = entry{name, filepath.Join(dir, sub, de.Name()), flags}
		}
	}
	entries := make([]entry, 0, len(byBase))
	for _, e := range byBase {
		entries = append(entries, e)
	}
	sort.Slice(entries, func(i, j int) bool { return entries[i].base < entries[j].base })
	msgs = make([]Message, 0, len(entries))
	for _, e := range entries {
		id, err := readMessageID(e.path)
		if os.IsNotExist(err) {
			vanished = true
			continue
		}
		if err != nil {
			return nil, false, err
		}
		msgs = append(msgs, Message{
			Folder:    folder,
			MessageID: id,
			Seen:      strings.ContainsRune(e.flags, 'S'),
			Deleted:   strings.ContainsRune(e.flags, 'T'),
			Path:      e.path,
		})
	}
	return msgs, vanished, nil
}

func readMessageID(path string) (string, error) {
	f, err := os.Open(path)
	if err != nil {
		return "", err
	}
	defer f.Close()
	m, err := mail.ReadMessage(bufio.NewReader(f))
	if err != nil {
		return "", nil // not a parsable header block: no Message-ID
	}
	id := strings.TrimSpace(m.Header.Get("Message-Id"))
	id = strings.TrimSuffix(strings.TrimPrefix(id, "<"), ">")
	return id, nil
}

func randomToken() (string, error) {
	var b [16]byte
	if _, err := rand.Read(b[:]); err != nil {
		return "", err
	}
	return hex.EncodeToString(b[:]), nil
}
