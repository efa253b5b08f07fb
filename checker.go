package mailsync

import (
	"context"
	"fmt"
	"strings"
	"time"
)

// Checker is an optional interface of a Connector, like database/sql's
// optional driver interfaces: Check tests the connection as the admin
// form's "test connection" button does — connect, log in, look at the
// folders it reads — and changes nothing. Its errors are typed like the
// Connector's (ErrAuth, ErrTLS, ErrConsentRequired, ErrFolderNotFound,
// ErrConnection, *ConfigError …). The imap, pop3, graph and gmail
// connectors implement it.
type Checker interface {
	Check(ctx context.Context) (*CheckResult, error)
}

// CheckResult is what a check found, in one shape for every provider.
type CheckResult struct {
	// Provider is "imap", "pop3", "graph", "gmail" or a custom provider's name.
	Provider string `json:"provider"`
	// Server is host:port, or the API's base URL.
	Server string `json:"server"`
	// Account is the mailbox as the server names it, when it says.
	Account string `json:"account,omitempty"`
	// Security is "implicit-tls", "starttls", "plaintext" or "https".
	Security string `json:"security"`
	// TLSVersion is the negotiated version ("TLS 1.3"), empty without TLS.
	TLSVersion string `json:"tls_version,omitempty"`
	// Auth is the login method: LOGIN, USER/PASS, XOAUTH2, OAUTHBEARER, or
	// "OAuth 2.0" for the APIs.
	Auth string `json:"auth,omitempty"`
	// Folders are the folders (labels, for Gmail) the connector reads.
	Folders []FolderStatus `json:"folders,omitempty"`
	// Capabilities are the server's capabilities (IMAP, POP3 CAPA).
	Capabilities []string `json:"capabilities,omitempty"`
	// Warnings point at things that work but look wrong.
	Warnings []string `json:"warnings,omitempty"`
	// Elapsed is how long the check took.
	Elapsed time.Duration `json:"elapsed"`
	// Details is the provider's own result (*imap.CheckResult, …).
	Details any `json:"-"`
}

// FolderStatus is one folder a connector reads.
type FolderStatus struct {
	Name     string `json:"name"`
	Messages int    `json:"messages"`
	// Unread is the number of unread messages, -1 when the provider cannot say.
	Unread int `json:"unread"`
}

// String summarises the result in one line for an admin screen or a log.
func (r *CheckResult) String() string {
	var b strings.Builder
	fmt.Fprintf(&b, "%s %s (%s", r.Provider, r.Server, r.Security)
	if r.TLSVersion != "" {
		b.WriteString(", " + r.TLSVersion)
	}
	if r.Auth != "" {
		b.WriteString(", " + r.Auth)
	}
	b.WriteString(")")
	if r.Account != "" {
		b.WriteString(" as " + r.Account)
	}
	for i, f := range r.Folders {
		sep := ", "
		if i == 0 {
			sep = ": "
		}
		fmt.Fprintf(&b, "%s%q %d messages", sep, f.Name, f.Messages)
		if f.Unread >= 0 {
			fmt.Fprintf(&b, " (%d unread)", f.Unread)
		}
	}
	for _, w := range r.Warnings {
		b.WriteString("; warning: " + w)
	}
	return b.String()
}
