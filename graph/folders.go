package graph

import (
	"context"
	"encoding/json"
	"fmt"
	"net/http"
	"net/url"
	"strings"

	"github.com/microsoftgraph/msgraph-sdk-go/models"
	"github.com/microsoftgraph/msgraph-sdk-go/users"

	"github.com/mailsync/mailsync"
)

// sourceFolders validates Folder and Folders and returns the folders to
// read: Folders, or Folder alone, or "inbox".
func sourceFolders(opts Options) ([]string, error) {
	var e []mailsync.Problem
	if opts.Folder != "" && len(opts.Folders) > 0 {
		e = append(e, mailsync.Problem{Field: "folders", Code: mailsync.CodeConflict, Message: "give either folder or folders, not both"})
	}
	for i, f := range opts.Folders {
		field := fmt.Sprintf("folders[%d]", i)
		switch {
		case strings.Trim(strings.TrimSpace(f), "/") == "":
			e = append(e, mailsync.Problem{Field: field, Code: mailsync.CodeRequired, Message: "is empty"})
		case strings.ContainsAny(f, "\r\n\x00"):
			e = append(e, mailsync.Problem{Field: field, Code: mailsync.CodeForbiddenCharacters, Message: "must not contain CR, LF or NUL"})
		default:
			for _, g := range opts.Folders[:i] {
				if strings.EqualFold(f, g) {
					e = append(e, mailsync.Problem{Field: field, Code: mailsync.CodeDuplicate, Message: fmt.Sprintf("%q is listed twice", f)})
					break
				}
			}
		}
	}
	if len(e) > 0 {
		return nil, mailsync.NewConfigError(e...)
	}
	switch {
	case len(opts.Folders) > 0:
		return append([]string(nil), opts.Folders...), nil
	case opts.Folder != "":
		return []string{opts.Folder}, nil
	}
	return []string{"inbox"}, nil
}

// The cursor. With one folder it is the folder's delta link followed by
// "#mailsync-folder=" and the URL-query-escaped folder name, the form
// every earlier version wrote, so an existing deployment that moves from
// Folder to Folders with the same folder keeps its delta link. With
// several folders it is JSON: {"v":2,"delta":{"<folder>":"<delta link>",
// …}}, the folder names as configured. A single-folder cursor read by a
// connector of several folders is the delta link of its folder, when that
// folder is listed; a JSON cursor read by a single-folder connector gives
// the folder its link. A folder without a link is listed whole.

// multiCursor is the JSON cursor of several folders.
type multiCursor struct {
	V     int               `json:"v"`
	Delta map[string]string `json:"delta"`
}

// encodeCursors returns the cursor for the delta links of the folders read.
func (c *Connector) encodeCursors(links map[string]string) mailsync.Cursor {
	if len(c.sources) == 1 {
		f := c.sources[0]
		return mailsync.Cursor(links[f] + "#" + cursorFolderTag + url.QueryEscape(f))
	}
	var b strings.Builder
	enc := json.NewEncoder(&b)
	enc.SetEscapeHTML(false)                        // delta links keep their "&"
	_ = enc.Encode(multiCursor{V: 2, Delta: links}) // strings only: cannot fail
	return mailsync.Cursor(strings.TrimSuffix(b.String(), "\n"))
}

// parseCursors decodes a cursor made by encodeCursors into delta links by
// folder name. legacyFolder is the folder of a single-folder cursor.
// Links that do not point at this connector's service are refused (ok is
// false), so a tampered cursor gets no token.
func (c *Connector) parseCursors(s string) (links map[string]string, legacyFolder string, ok bool) {
	if strings.HasPrefix(s, "{") {
		var mc multiCursor
		if err := json.Unmarshal([]byte(s), &mc); err != nil || mc.V != 2 {
			return nil, "", false
		}
		for f, link := range mc.Delta {
			if !c.usableLink(link) || f == "" {
				return nil, "", false
			}
		}
		if mc.Delta == nil {
			mc.Delta = map[string]string{}
		}
		return mc.Delta, "", true
	}
	link, folder, ok := c.parseCursor(s)
	if !ok {
		return nil, "", false
	}
	return map[string]string{folder: link}, folder, true
}

// usableLink reports whether link is a delta link of this connector's
// service.
func (c *Connector) usableLink(link string) bool {
	u, err := url.Parse(link)
	return err == nil && u.Scheme == "https" && strings.EqualFold(hostPort(u), hostPort(c.base)) && strings.Contains(u.Path, "/messages/")
}

// CheckResult is what Connector.Check found (mailsync.CheckResult.Details).
type CheckResult struct {
	// Read are the folders the connector reads, in the order of
	// Options.Folders, with their counts.
	Read []mailsync.FolderStatus
	// Mailboxes are the account's folders, so an admin can pick what to
	// read (at most maxCheckFolders).
	Mailboxes []Mailbox
}

// Mailbox is one folder of the account.
type Mailbox struct {
	// Name is the folder's path of display names separated by "/", as
	// Options.Folders takes it ("Inbox/Tier 1").
	Name string
	// WellKnown is Graph's well-known name of the folder ("inbox",
	// "junkemail", "deleteditems", "sentitems", "drafts", "archive"), ""
	// for the others. A junkemail folder is read only when listed in
	// Options.Folders.
	WellKnown string
	// Messages and Unread are the folder's counts.
	Messages, Unread int
}

// checkWellKnown are the well-known folders Check marks in Mailboxes.
var checkWellKnown = []string{"inbox", "junkemail", "deleteditems", "sentitems", "drafts", "archive"}

// maxCheckFolders bounds the folders Check lists.
const maxCheckFolders = 2000

// mailboxes lists the account's folders, depth first, at most
// maxCheckFolders, with their well-known names; known maps the ids of the
// well-known folders to their names.
func (c *Connector) mailboxes(ctx context.Context) (_ []Mailbox, known map[string]string, _ error) {
	known = map[string]string{} // id -> well-known name
	for _, wk := range checkWellKnown {
		err := c.call(ctx, func(ctx context.Context) error {
			f, err := c.user().MailFolders().ByMailFolderId(wk).Get(ctx, &users.ItemMailFoldersMailFolderItemRequestBuilderGetRequestConfiguration{
				Headers: c.headers(), QueryParameters: &users.ItemMailFoldersMailFolderItemRequestBuilderGetQueryParameters{Select: []string{"id"}}})
			if err == nil && f != nil && f.GetId() != nil {
				known[*f.GetId()] = wk
			}
			return err
		})
		if statusOf(err) == http.StatusNotFound {
			continue // the mailbox has no such folder (e.g. no archive)
		}
		if err != nil {
			return nil, nil, mapError(ctx, "check folder "+wk, err, mailsync.ErrFolderNotFound)
		}
	}
	var out []Mailbox
	var walk func(parentID, path string) error
	walk = func(parentID, path string) error {
		next := ""
		for first := true; first || next != ""; first = false {
			if len(out) >= maxCheckFolders {
				return nil
			}
			if next != "" && !c.sameService(next) {
				return &Error{Op: "list folders", Message: "nextLink points outside the Graph service root", Kind: mailsync.ErrConnection}
			}
			var vals []models.MailFolderable
			err := c.call(ctx, func(ctx context.Context) error {
				var resp models.MailFolderCollectionResponseable
				var err error
				sel := []string{"id", "displayName", "childFolderCount", "totalItemCount", "unreadItemCount"}
				top := int32(100)
				switch {
				case next != "":
					resp, err = users.NewItemMailFoldersRequestBuilder(next, c.adapter).Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{Headers: c.headers()})
				case parentID == "":
					resp, err = c.user().MailFolders().Get(ctx, &users.ItemMailFoldersRequestBuilderGetRequestConfiguration{
						Headers: c.headers(), QueryParameters: &users.ItemMailFoldersRequestBuilderGetQueryParameters{Select: sel, Top: &top}})
				default:
					resp, err = c.user().MailFolders().ByMailFolderId(parentID).ChildFolders().Get(ctx, &users.ItemMailFoldersItemChildFoldersRequestBuilderGetRequestConfiguration{
						Headers: c.headers(), QueryParameters: &users.ItemMailFoldersItemChildFoldersRequestBuilderGetQueryParameters{Select: sel, Top: &top}})
				}
				next = ""
				if err == nil && resp != nil {
					vals = resp.GetValue()
					if n := resp.GetOdataNextLink(); n != nil {
						next = *n
					}
				}
				return err
			})
			if err != nil {
				return mapError(ctx, "list folders", err, mailsync.ErrFolderNotFound)
			}
			for _, f := range vals {
				if f == nil || f.GetId() == nil || f.GetDisplayName() == nil || len(out) >= maxCheckFolders {
					continue
				}
				m := Mailbox{Name: path + *f.GetDisplayName(), WellKnown: known[*f.GetId()], Messages: -1, Unread: -1}
				if n := f.GetTotalItemCount(); n != nil {
					m.Messages = int(*n)
				}
				if n := f.GetUnreadItemCount(); n != nil {
					m.Unread = int(*n)
				}
				out = append(out, m)
				if n := f.GetChildFolderCount(); n != nil && *n > 0 {
					if err := walk(*f.GetId(), m.Name+"/"); err != nil {
						return err
					}
				}
			}
		}
		return nil
	}
	if err := walk("", ""); err != nil {
		return nil, nil, err
	}
	return out, known, nil
}
