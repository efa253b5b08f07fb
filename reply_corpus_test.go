package mailsync

import (
	"fmt"
	"os"
	"path/filepath"
	"sort"
	"strings"
	"testing"

	"github.com/mailsync/mailsync/internal/mime"
)

// TestReplyCorpus checks reply segmentation on the labelled corpus in
// testdata/replies (one <client>.<language>.<name>.eml per case, its new
// text in <name>.reply.txt): a case is right when Message.Reply is the
// expected new text (white space collapsed), the quote and the signature
// removed. It fails when a case loses words of the new text (in Reply, or
// in ReplyHTML rendered as text), or when the
// precision of Reply or of ReplyHTML falls below 95 %. The table per client and language:
//
//	go test -run TestReplyCorpus -v .
func TestReplyCorpus(t *testing.T) {
	emls, err := filepath.Glob(filepath.Join("testdata", "replies", "*.eml"))
	if err != nil || len(emls) == 0 {
		t.Fatalf("no corpus: %v", err)
	}
	type tally struct{ ok, n, htmlOK, htmlN int }
	perClient, perLang := map[string]*tally{}, map[string]*tally{}
	var total tally
	p := &Parser{TempDir: t.TempDir()}
	for _, path := range emls {
		name := strings.TrimSuffix(filepath.Base(path), ".eml")
		client, rest, _ := strings.Cut(name, ".")
		lang, _, _ := strings.Cut(rest, ".")
		raw, err := os.ReadFile(path)
		if err != nil {
			t.Fatal(err)
		}
		want, err := os.ReadFile(strings.TrimSuffix(path, ".eml") + ".reply.txt")
		if err != nil {
			t.Fatal(err)
		}
		m, err := p.parse(strings.NewReader(string(raw)))
		if err != nil {
			t.Fatalf("%s: %v", name, err)
		}
		got, exp := collapse(m.Reply), collapse(string(want))
		ok := got == exp
		if !strings.Contains(got, exp) {
			t.Errorf("%s: words of the new text lost (marker %q)\n got: %q\nwant: %q", name, m.ReplyMarker, got, exp)
		} else if !ok {
			t.Logf("%s: quote or signature kept (marker %q)\n got: %q\nwant: %q", name, m.ReplyMarker, got, exp)
		}
		hasHTML, htmlOK := m.HTML != "", false
		if hasHTML {
			// The HTML's new text must keep the words too.
			gotHTML := collapse(mime.HTMLToText([]byte(m.ReplyHTML)))
			htmlOK = gotHTML == exp
			if !htmlOK && strings.Contains(gotHTML, exp) {
				t.Logf("%s: quote or signature kept in ReplyHTML (marker %q)\n got: %q\nwant: %q", name, m.ReplyHTMLMarker, gotHTML, exp)
			}
			if !strings.Contains(gotHTML, exp) {
				t.Errorf("%s: words of the new text lost from ReplyHTML (marker %q)\n got: %q\nwant: %q", name, m.ReplyHTMLMarker, gotHTML, exp)
			}
		}
		if strings.TrimSpace(m.Text) != "" && strings.TrimSpace(m.Reply) == "" {
			t.Errorf("%s: empty reply for a non-empty text", name)
		}
		m.Close()
		for _, tl := range []*tally{get(perClient, client), get(perLang, lang), &total} {
			tl.n++
			if ok {
				tl.ok++
			}
			if hasHTML {
				tl.htmlN++
				if htmlOK {
					tl.htmlOK++
				}
			}
		}
	}
	var b strings.Builder
	pct := func(ok, n int) string {
		if n == 0 {
			return "      - |         -"
		}
		return fmt.Sprintf("%3d/%-3d | %7.1f %%", ok, n, 100*float64(ok)/float64(n))
	}
	row := func(kind, key string, tl *tally) {
		fmt.Fprintf(&b, "| %-6s | %-12s | %s | %s |\n", kind, key, pct(tl.ok, tl.n), pct(tl.htmlOK, tl.htmlN))
	}
	b.WriteString("| by     | value        | Reply   | precision | ReplyHTML | precision |\n|--------|--------------|---------|-----------|-----------|-----------|\n")
	for _, k := range sortedKeys(perClient) {
		row("client", k, perClient[k])
	}
	for _, k := range sortedKeys(perLang) {
		row("lang", k, perLang[k])
	}
	row("all", "", &total)
	t.Logf("reply segmentation precision on testdata/replies:\n%s", b.String())
	if prec := float64(total.ok) / float64(total.n); prec < 0.95 {
		t.Errorf("precision %.1f %% < 95 %%", 100*prec)
	}
	if prec := float64(total.htmlOK) / float64(total.htmlN); prec < 0.95 {
		t.Errorf("ReplyHTML precision %.1f %% < 95 %%", 100*prec)
	}
}

func get[T any](m map[string]*T, k string) *T {
	if m[k] == nil {
		m[k] = new(T)
	}
	return m[k]
}

func sortedKeys[T any](m map[string]T) []string {
	keys := make([]string, 0, len(m))
	for k := range m {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	return keys
}

func collapse(s string) string { return strings.Join(strings.Fields(s), " ") }
