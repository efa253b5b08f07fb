package gmail

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"runtime"
	"strings"
	"testing"
	"testing/iotest"

	"github.com/mailsync/mailsync"
)

func readRaw(t *testing.T, doc string, wrap func(io.Reader) io.Reader) ([]byte, error) {
	t.Helper()
	var r io.Reader = strings.NewReader(doc)
	if wrap != nil {
		r = wrap(r)
	}
	rr, err := newRawReader(r, "k1")
	if err != nil {
		return nil, err
	}
	return io.ReadAll(rr)
}

func TestRawReaderEncodings(t *testing.T) {
	// Lengths 0..5 cover every padding case ("", "==", "=").
	for n := 0; n < 6; n++ {
		msg := []byte("Subject: ok\r\n\r\n\xff\xfe>?"[:10+n])
		padded := base64.URLEncoding.EncodeToString(msg)
		cases := map[string]string{
			"padded":   padded,
			"unpadded": base64.RawURLEncoding.EncodeToString(msg),
			"escaped":  strings.ReplaceAll(padded, "=", `\u003d`),
			"standard": base64.StdEncoding.EncodeToString(msg),
			"wrapped":  padded[:min(4, len(padded))] + `\r\n` + padded[min(4, len(padded)):],
			"slash":    strings.ReplaceAll(padded, "_", `\/`), // "\/" is "/", the standard alphabet's "_"
		}
		for name, enc := range cases {
			doc := fmt.Sprintf(`{"id":"18c","threadId":"18c","labelIds":["INBOX","UNREAD"],"snippet":"a \"quoted\" {brace} [x] raw","sizeEstimate":%d,"raw":"%s","historyId":"4207","internalDate":"1764150000000"}`, len(msg), enc)
			for wname, wrap := range map[string]func(io.Reader) io.Reader{"whole": nil, "onebyte": iotest.OneByteReader, "half": iotest.HalfReader} {
				got, err := readRaw(t, doc, wrap)
				if err != nil {
					t.Fatalf("%d %s %s: %v", n, name, wname, err)
				}
				if !bytes.Equal(got, msg) {
					t.Fatalf("%d %s %s: got %q, want %q", n, name, wname, got, msg)
				}
			}
		}
	}
}

func TestRawReaderMemberOrderAndNesting(t *testing.T) {
	msg := []byte("From: a@example.com\r\n\r\nhi")
	enc := base64.URLEncoding.EncodeToString(msg)
	docs := []string{
		`{"raw":"` + enc + `"}`,
		" {\n  \"payload\": {\"raw\": \"bm90IHRoaXM=\", \"parts\": [{\"raw\": \"x\"}]},\n  \"raw\" : \"" + enc + "\"\n}",
		`{"n":-1.5e3,"t":true,"f":false,"z":null,"a":[1,[2,{"raw":"no"}]],"k\"raw":"no","raw":"` + enc + `","after":1}`,
		`{"r\u0061w":"` + enc + `"}`, // the member name escaped
	}
	for i, d := range docs {
		got, err := readRaw(t, d, nil)
		if err != nil || !bytes.Equal(got, msg) {
			t.Errorf("doc %d: %q, %v", i, got, err)
		}
	}
}

func TestRawReaderErrors(t *testing.T) {
	for name, tc := range map[string]struct {
		doc  string
		want error // nil: any non-nil error that is not ErrConnection
	}{
		"no raw":         {doc: `{"id":"1","labelIds":["INBOX"]}`, want: errNoRaw},
		"raw null":       {doc: `{"raw":null}`},
		"not an object":  {doc: `["raw"]`},
		"bad base64":     {doc: `{"raw":"ab$d"}`},
		"one extra char": {doc: `{"raw":"abcde"}`},
		"bad escape":     {doc: `{"raw":"ab\qcd"}`},
		"truncated":      {doc: `{"raw":"YWJj`, want: mailsync.ErrConnection},
		"cut in name":    {doc: `{"ra`, want: mailsync.ErrConnection},
		"empty":          {doc: ``, want: mailsync.ErrConnection},
	} {
		_, err := readRaw(t, tc.doc, nil)
		if err == nil {
			t.Errorf("%s: no error", name)
			continue
		}
		if tc.want != nil && !errors.Is(err, tc.want) {
			t.Errorf("%s: %v, want %v", name, err, tc.want)
		}
		if tc.want == nil && errors.Is(err, mailsync.ErrConnection) {
			t.Errorf("%s: %v is not a connection problem", name, err)
		}
		if !strings.Contains(err.Error(), "k1") {
			t.Errorf("%s: error %q does not name the message", name, err)
		}
	}
}

// A transport failure in the middle of the body surfaces as ErrConnection
// to the reader of the message.
func TestRawReaderConnectionError(t *testing.T) {
	doc := `{"raw":"` + base64.URLEncoding.EncodeToString(bytes.Repeat([]byte("x"), 1000))
	r := io.MultiReader(strings.NewReader(doc), iotest.ErrReader(errors.New("connection reset by peer")))
	rr, err := newRawReader(r, "k1")
	if err != nil {
		t.Fatal(err)
	}
	_, err = io.ReadAll(rr)
	if !errors.Is(err, mailsync.ErrConnection) || !strings.Contains(err.Error(), "reset") {
		t.Fatalf("got %v", err)
	}
}

// jsonStream writes a messages.get answer for n random bytes, base64url
// encoded on the fly, without holding it whole.
func jsonStream(n int) io.Reader {
	pr, pw := io.Pipe()
	data := make([]byte, 1<<20)
	go func() {
		io.WriteString(pw, `{"id":"1","sizeEstimate":1,"raw":"`)
		enc := base64.NewEncoder(base64.URLEncoding, pw)
		left := n
		for left > 0 {
			c := min(left, len(data))
			rand.Read(data[:c])
			enc.Write(data[:c])
			left -= c
		}
		enc.Close()
		io.WriteString(pw, `","historyId":"1"}`)
		pw.Close()
	}()
	return pr
}

// A 24 MiB message decodes with a few buffers of memory: the JSON string
// is never held whole.
func TestRawReaderStreamsLargeMessage(t *testing.T) {
	if testing.Short() {
		t.Skip("short")
	}
	const size = 24 << 20
	src := jsonStream(size)
	rr, err := newRawReader(src, "big")
	if err != nil {
		t.Fatal(err)
	}
	var before, after runtime.MemStats
	runtime.GC()
	runtime.ReadMemStats(&before)
	buf := make([]byte, 32<<10)
	var total int64
	var peak uint64
	for {
		n, err := rr.Read(buf)
		total += int64(n)
		if total%(8<<20) < int64(n) {
			var m runtime.MemStats
			runtime.ReadMemStats(&m)
			peak = max(peak, m.HeapInuse)
		}
		if err == io.EOF {
			break
		}
		if err != nil {
			t.Fatal(err)
		}
	}
	runtime.ReadMemStats(&after)
	if total != size {
		t.Fatalf("decoded %d bytes, want %d", total, size)
	}
	// The writer goroutine's 1 MiB buffer and the encoders are included.
	if grew := int64(peak) - int64(before.HeapInuse); grew > 8<<20 {
		t.Fatalf("heap grew by %d MiB while decoding a %d MiB message", grew>>20, size>>20)
	}
	t.Logf("24 MiB decoded; heap in use grew by at most %d KiB", (int64(peak)-int64(before.HeapInuse))>>10)
}

// FuzzRawReader: whatever the answer, no panic; when encoding/json and
// base64 agree that it holds a message, the stream yields exactly it.
func FuzzRawReader(f *testing.F) {
	f.Add(`{"raw":"SGVsbG8="}`)
	f.Add(`{"id":"1","raw":"SGVsbG8\u003d"}`)
	f.Add(`{"a":{"raw":"x"},"raw":"SGVs\nbG8"}`)
	f.Add(`{"raw":"\ud83d\ude00"}`)
	f.Add(`{"raw":"SGVsbG8`)
	f.Fuzz(func(t *testing.T, doc string) {
		rr, err := newRawReader(strings.NewReader(doc), "f")
		var got []byte
		if err == nil {
			got, err = io.ReadAll(rr)
		}
		var v map[string]json.RawMessage
		if json.Unmarshal([]byte(doc), &v) != nil {
			return
		}
		var s string
		if json.Unmarshal(v["raw"], &s) != nil {
			return
		}
		clean := strings.NewReplacer("=", "", "\r", "", "\n", "", " ", "", "\t", "", "+", "-", "/", "_").Replace(s)
		want, derr := base64.RawURLEncoding.DecodeString(clean)
		if derr != nil {
			return
		}
		if bytes.Count([]byte(doc), []byte(`"raw"`)) != 1 {
			return // a nested or duplicate "raw": the first top-level one wins
		}
		if err != nil {
			t.Fatalf("%q: %v", doc, err)
		}
		if !bytes.Equal(got, want) {
			t.Fatalf("%q: got %q, want %q", doc, got, want)
		}
	})
}
