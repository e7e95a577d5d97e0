package auth

import (
	"bufio"
	"bytes"
	"crypto/rand"
	"crypto/sha256"
	"errors"
	"fmt"
	"io/fs"
	"log/slog"
	"os"
	"path/filepath"
	"strings"
	"sync"
	"sync/atomic"
	"time"

	"golang.org/x/crypto/bcrypt"
)

// userSet is the users of one load of the htpasswd file. It is never
// changed once published.
type userSet struct {
	hashes map[string][]byte // user: bcrypt hash
	gen    uint64            // bumped on every load that changed the users

	dummyCost int
	dummyOnce sync.Once
	dummy     []byte
}

// dummyHash is a hash no password matches, at the cost of the file's
// entries: an unknown user is checked against it so that a login for an
// unknown user costs what one for a known user does.
func (u *userSet) dummyHash() []byte {
	u.dummyOnce.Do(func() {
		pw := make([]byte, 32)
		_, _ = rand.Read(pw)
		u.dummy, _ = bcrypt.GenerateFromPassword(pw, u.dummyCost)
	})
	return u.dummy
}

// skippedEntry is a line of an htpasswd file that gives no user. user is
// empty when the line is too malformed to trust its first field as a name.
type skippedEntry struct {
	line   int
	user   string
	reason string
}

// parseHtpasswd reads "user:hash" lines; blank lines and lines starting
// with # are ignored. Only bcrypt hashes are accepted; other entries are
// returned as skipped, with the reason.
func parseHtpasswd(data []byte) (map[string][]byte, int, []skippedEntry) {
	hashes := make(map[string][]byte)
	cost := 0
	var skipped []skippedEntry
	sc := bufio.NewScanner(bytes.NewReader(data))
	sc.Buffer(make([]byte, 0, 4096), 1<<20)
	for n := 1; sc.Scan(); n++ {
		line := strings.TrimSpace(sc.Text())
		if line == "" || strings.HasPrefix(line, "#") {
			continue
		}
		user, hash, ok := strings.Cut(line, ":")
		if !ok || user == "" || !validUser(user) {
			skipped = append(skipped, skippedEntry{line: n, reason: "not a user:hash line"})
			continue
		}
		if _, dup := hashes[user]; dup {
			skipped = append(skipped, skippedEntry{line: n, user: user, reason: "duplicate user; the first entry is used"})
			continue
		}
		if reason := hashScheme(hash); reason != "" {
			skipped = append(skipped, skippedEntry{line: n, user: user, reason: reason})
			continue
		}
		c, err := bcrypt.Cost([]byte(hash))
		if err != nil {
			skipped = append(skipped, skippedEntry{line: n, user: user, reason: "malformed bcrypt hash"})
			continue
		}
		if cost == 0 {
			cost = c
		}
		hashes[user] = []byte(hash)
	}
	if err := sc.Err(); err != nil {
		skipped = append(skipped, skippedEntry{reason: "file not read to the end: " + err.Error()})
	}
	if cost == 0 {
		cost = bcrypt.DefaultCost
	}
	return hashes, cost, skipped
}

// hashScheme is why hash is not accepted, or "" for a bcrypt hash.
func hashScheme(hash string) string {
	switch {
	case strings.HasPrefix(hash, "$2a$"), strings.HasPrefix(hash, "$2b$"), strings.HasPrefix(hash, "$2y$"):
		return ""
	case strings.HasPrefix(hash, "$apr1$"):
		return "MD5 (apr1) hash; only bcrypt is accepted (htpasswd -B)"
	case strings.HasPrefix(hash, "{SHA}"):
		return "SHA-1 hash; only bcrypt is accepted (htpasswd -B)"
	case strings.HasPrefix(hash, "$1$"), strings.HasPrefix(hash, "$5$"), strings.HasPrefix(hash, "$6$"):
		return "crypt(3) MD5/SHA hash; only bcrypt is accepted (htpasswd -B)"
	case strings.HasPrefix(hash, "$"):
		return "unsupported hash scheme; only bcrypt is accepted (htpasswd -B)"
	default:
		return "crypt or plain-text entry; only bcrypt is accepted (htpasswd -B)"
	}
}

// validUser reports whether name can be a user of HTTP Basic and a line of
// an htpasswd file: no colon, no white space, no control characters.
func validUser(name string) bool {
	if name == "" || len(name) > 255 {
		return false
	}
	for _, r := range name {
		if r == ':' || r <= ' ' || r == 0x7f {
			return false
		}
	}
	return true
}

// fileStamp is what a stat tells of a change to the file.
type fileStamp struct {
	mtime time.Time
	size  int64
}

// userFile is the htpasswd file and the users of its last good load. The
// file is checked for changes on use, at most once per interval, by one
// caller at a time; others go on with the users they have.
type userFile struct {
	path     string
	interval time.Duration
	log      *slog.Logger
	m        *metrics
	onChange func() // called after a load that changed the users

	set  atomic.Pointer[userSet]
	next atomic.Int64 // Unix nanoseconds before which the file is not checked

	mu    sync.Mutex // held by the caller checking the file
	stamp fileStamp
	sum   [sha256.Size]byte
	gen   uint64
}

// load reads the file for the first time: a file that cannot be read is an
// error. No path means no users.
func (f *userFile) load(now time.Time) error {
	f.mu.Lock()
	defer f.mu.Unlock()
	if f.path == "" {
		f.set.Store(&userSet{hashes: map[string][]byte{}, dummyCost: bcrypt.DefaultCost})
		return nil
	}
	f.next.Store(now.Add(f.interval).UnixNano())
	fi, err := os.Stat(f.path)
	if err != nil {
		f.m.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("auth: htpasswd: %w", err)
	}
	data, err := os.ReadFile(f.path)
	if err != nil {
		f.m.reloads.WithLabelValues("error").Inc()
		return fmt.Errorf("auth: htpasswd: %w", err)
	}
	f.publish(data, fileStamp{fi.ModTime(), fi.Size()})
	return nil
}

// users is the current set, after checking the file if it is time to.
func (f *userFile) users(now time.Time) *userSet {
	if f.path != "" && now.UnixNano() >= f.next.Load() && f.mu.TryLock() {
		f.check(now)
		f.mu.Unlock()
	}
	return f.set.Load()
}

// check reloads the file if its modification time or size changed and its
// content with them. A file that cannot be read keeps the last users.
// Called with mu held.
func (f *userFile) check(now time.Time) {
	if now.UnixNano() < f.next.Load() {
		return // checked by another caller meanwhile
	}
	f.next.Store(now.Add(f.interval).UnixNano())
	fi, err := os.Stat(f.path)
	if err == nil && (fileStamp{fi.ModTime(), fi.Size()}) == f.stamp {
		return
	}
	var data []byte
	if err == nil {
		data, err = os.ReadFile(f.path)
	}
	if err != nil {
		f.m.reloads.WithLabelValues("error").Inc()
		msg := "auth: htpasswd file unreadable; keeping the users of its last load"
		if errors.Is(err, fs.ErrNotExist) {
			msg = "auth: htpasswd file is gone; keeping the users of its last load"
		}
		f.log.Error(msg, "path", f.path, "err", err)
		return
	}
	f.publish(data, fileStamp{fi.ModTime(), fi.Size()})
}

// publish parses data and makes it the current users if it differs from
// the last load. Called with mu held.
func (f *userFile) publish(data []byte, st fileStamp) {
	f.stamp = st
	sum := sha256.Sum256(data)
	if f.set.Load() != nil && sum == f.sum {
		return
	}
	f.sum = sum
	hashes, cost, skipped := parseHtpasswd(data)
	for _, s := range skipped {
		attrs := []any{"path", f.path, "line", s.line, "reason", s.reason}
		if s.user != "" {
			attrs = append(attrs, "user", s.user)
		}
		f.log.Warn("auth: htpasswd entry ignored", attrs...)
	}
	f.gen++
	f.set.Store(&userSet{hashes: hashes, gen: f.gen, dummyCost: cost})
	f.m.reloads.WithLabelValues("ok").Inc()
	f.m.users.Set(float64(len(hashes)))
	f.log.Info("auth: htpasswd loaded", "path", f.path, "users", len(hashes), "ignored", len(skipped))
	if f.onChange != nil {
		f.onChange()
	}
}

// HashPassword hashes a password with bcrypt at the default cost, for an
// htpasswd entry. Passwords longer than 72 bytes are refused, as bcrypt
// would ignore the rest.
func HashPassword(pw string) (string, error) { return hashPassword(pw, bcrypt.DefaultCost) }

func hashPassword(pw string, cost int) (string, error) {
	h, err := bcrypt.GenerateFromPassword([]byte(pw), cost)
	if err != nil {
		return "", fmt.Errorf("auth: hash password: %w", err)
	}
	return string(h), nil
}

// HtpasswdLine is the line of an htpasswd file, newline included, that
// gives user the bcrypt hash (from [HashPassword]).
func HtpasswdLine(user, hash string) (string, error) {
	if !validUser(user) {
		return "", fmt.Errorf("auth: user name %q: empty, too long, or has a colon, space or control character", user)
	}
	if _, err := bcrypt.Cost([]byte(hash)); err != nil || hashScheme(hash) != "" {
		return "", errors.New("auth: not a bcrypt hash")
	}
	return user + ":" + hash + "\n", nil
}

// SetPassword gives user a bcrypt hash of password in the htpasswd file at
// path: its entry is replaced, or added at the end. Other lines are kept.
// The file is replaced whole (written beside it, then renamed), so a node
// reading it never sees half of it; it keeps its mode, and a new file is
// made readable by its owner only.
func SetPassword(path, user, password string) error {
	return setPassword(path, user, password, bcrypt.DefaultCost)
}

func setPassword(path, user, password string, cost int) error {
	hash, err := hashPassword(password, cost)
	if err != nil {
		return err
	}
	entry, err := HtpasswdLine(user, hash)
	if err != nil {
		return err
	}
	mode := fs.FileMode(0o600)
	old, err := os.ReadFile(path)
	switch {
	case errors.Is(err, fs.ErrNotExist):
	case err != nil:
		return fmt.Errorf("auth: htpasswd: %w", err)
	default:
		if fi, err := os.Stat(path); err == nil {
			mode = fi.Mode().Perm()
		}
	}
	var out strings.Builder
	done := false
	for line := range strings.Lines(string(old)) {
		if name, _, ok := strings.Cut(strings.TrimSpace(line), ":"); ok && name == user {
			if !done {
				out.WriteString(entry)
				done = true
			}
			continue
		}
		out.WriteString(line)
		if !strings.HasSuffix(line, "\n") {
			out.WriteString("\n")
		}
	}
	if !done {
		out.WriteString(entry)
	}
	return writeFileAtomic(path, []byte(out.String()), mode)
}

func writeFileAtomic(path string, data []byte, mode fs.FileMode) error {
	tmp, err := os.CreateTemp(filepath.Dir(path), "."+filepath.Base(path)+".*")
	if err != nil {
		return fmt.Errorf("auth: htpasswd: %w", err)
	}
	defer os.Remove(tmp.Name()) // fails harmlessly once renamed
	_, err = tmp.Write(data)
	if err == nil {
		err = tmp.Chmod(mode)
	}
	if err == nil {
		err = tmp.Sync()
	}
	if cerr := tmp.Close(); err == nil {
		err = cerr
	}
	if err == nil {
		err = os.Rename(tmp.Name(), path)
	}
	if err != nil {
		return fmt.Errorf("auth: htpasswd: %w", err)
	}
	return nil
}
