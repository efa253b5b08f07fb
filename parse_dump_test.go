package mailsync

import (
	"fmt"
	"os"
	"path/filepath"
	"testing"
)

func TestDumpCorpus(t *testing.T) {
	if os.Getenv("DUMP") == "" {
		t.Skip()
	}
	filepath.WalkDir("testdata/corpus", func(path string, d os.DirEntry, err error) error {
		if d.IsDir() || filepath.Base(path) == "LICENSE" || filepath.Base(path)[0] == '.' || filepath.Ext(path) == ".md" {
			return nil
		}
		f, _ := os.Open(path)
		defer f.Close()
		m, err := (&Parser{}).Parse(f)
		if err != nil {
			fmt.Printf("== %s\nERR %v\n", path, err)
			return nil
		}
		defer m.Close()
		fmt.Printf("== %s\nSubj %q\nFrom %q <%s>\nTo %v\nDate %v MID %q IRT %q Ref %q\nText %q (fromhtml %v)\nHTML %d\n", path, m.Subject, m.From.Name, m.From.Address, m.To, m.Date, m.MessageID, m.InReplyTo, m.References, trunc(m.Text), m.TextFromHTML, len(m.HTML))
		for _, a := range m.Attachments {
			fmt.Printf("  att %q %s cid=%q inline=%v size=%d\n", a.Filename, a.ContentType, a.ContentID, a.Inline, a.Size)
		}
		for _, w := range m.Warnings {
			fmt.Printf("  WARN %s\n", w)
		}
		return nil
	})
}

func trunc(s string) string {
	if len(s) > 100 {
		return s[:100]
	}
	return s
}
