package main

import (
	"crypto/aes"
	"crypto/cipher"
	"crypto/hmac"
	"crypto/rand"
	"crypto/sha256"
	"encoding/base64"
	"encoding/hex"
	"errors"
	"fmt"
	"os"
	"path/filepath"
	"strings"

	"github.com/mailsync/mailsync"
)

// keyEnv names the environment variable that holds the host's master key
// (32 bytes, hex or base64). Without it the key is read from, or created
// in, keyFile in the data directory.
const (
	keyEnv  = "MAILSYNC_HELPDESK_KEY"
	keyFile = "helpdesk.key"
)

// secretBox encrypts the OAuth client secrets and refresh tokens the host
// stores, with AES-256-GCM.
//
// Why the host and not the library: mailsync never stores a credential. A
// password is typed at sync time and only handed to the connector; an OAuth
// block (client secret, refresh token) is the host's to keep, and it comes
// back to the host when the provider rotates the refresh token
// (oauthx.Options.OnRefreshToken). So the host encrypts them at rest, with
// a key that is not in the database: a copy of the database alone reveals
// nothing.
type secretBox struct {
	aead cipher.AEAD
	key  []byte // for derived keys (CSRF)
}

// loadKey returns the master key: from MAILSYNC_HELPDESK_KEY, or from the
// key file in dir, created with mode 0600 on first run.
func loadKey(dir string) ([]byte, error) {
	if v := strings.TrimSpace(os.Getenv(keyEnv)); v != "" {
		k, err := decodeKey(v)
		if err != nil {
			return nil, fmt.Errorf("%s: %w", keyEnv, err)
		}
		return k, nil
	}
	path := filepath.Join(dir, keyFile)
	if b, err := os.ReadFile(path); err == nil {
		k, err := decodeKey(strings.TrimSpace(string(b)))
		if err != nil {
			return nil, fmt.Errorf("%s: %w", path, err)
		}
		return k, nil
	} else if !errors.Is(err, os.ErrNotExist) {
		return nil, err
	}
	k := make([]byte, 32)
	if _, err := rand.Read(k); err != nil {
		return nil, err
	}
	// O_EXCL: two instances starting at once do not overwrite each other's key.
	f, err := os.OpenFile(path, os.O_WRONLY|os.O_CREATE|os.O_EXCL, 0o600)
	if err != nil {
		if errors.Is(err, os.ErrExist) {
			return loadKey(dir)
		}
		return nil, err
	}
	if _, err := f.WriteString(hex.EncodeToString(k) + "\n"); err != nil {
		f.Close()
		return nil, err
	}
	return k, f.Close()
}

func decodeKey(s string) ([]byte, error) {
	if k, err := hex.DecodeString(s); err == nil && len(k) == 32 {
		return k, nil
	}
	if k, err := base64.StdEncoding.DecodeString(s); err == nil && len(k) == 32 {
		return k, nil
	}
	return nil, errors.New("the key must be 32 bytes, written as 64 hex digits or in base64")
}

func newSecretBox(key []byte) (*secretBox, error) {
	block, err := aes.NewCipher(key)
	if err != nil {
		return nil, err
	}
	aead, err := cipher.NewGCM(block)
	if err != nil {
		return nil, err
	}
	return &secretBox{aead: aead, key: key}, nil
}

// sealedPrefix marks a sealed value (and its format version).
const sealedPrefix = "v1:"

// seal encrypts s; context (table, row and column) is authenticated, so a
// sealed value copied into another row or column does not open. An empty
// secret stays empty.
func (b *secretBox) seal(s mailsync.Secret, context string) (string, error) {
	if s == "" {
		return "", nil
	}
	nonce := make([]byte, b.aead.NonceSize())
	if _, err := rand.Read(nonce); err != nil {
		return "", err
	}
	ct := b.aead.Seal(nonce, nonce, []byte(s.Reveal()), []byte(context))
	return sealedPrefix + base64.RawStdEncoding.EncodeToString(ct), nil
}

// open decrypts a value made by seal.
func (b *secretBox) open(v, context string) (mailsync.Secret, error) {
	if v == "" {
		return "", nil
	}
	raw, ok := strings.CutPrefix(v, sealedPrefix)
	if !ok {
		return "", errors.New("stored secret is not sealed")
	}
	ct, err := base64.RawStdEncoding.DecodeString(raw)
	if err != nil || len(ct) < b.aead.NonceSize() {
		return "", errors.New("stored secret is corrupt")
	}
	pt, err := b.aead.Open(nil, ct[:b.aead.NonceSize()], ct[b.aead.NonceSize():], []byte(context))
	if err != nil {
		return "", errors.New("stored secret does not open with this key (was " + keyEnv + " or the key file changed?)")
	}
	return mailsync.Secret(pt), nil
}

// derive returns a key for another purpose (e.g. "csrf"), so the master
// key itself is used for one thing only.
func (b *secretBox) derive(purpose string) []byte {
	m := hmac.New(sha256.New, b.key)
	m.Write([]byte("mailsync-helpdesk/" + purpose))
	return m.Sum(nil)
}
