package gmail

import (
	"bufio"
	"bytes"
	"context"
	"fmt"
	"io"
	"mime"
	"mime/multipart"
	"net/http"
	"net/textproto"
	"strconv"
	"strings"
)

// innerCall is one call of a batch request.
type innerCall struct {
	method string
	target string // absolute path and query, e.g. /gmail/v1/users/me/messages/ID?format=raw
}

// batch sends calls (at most MaxBatchSize) to the batch endpoint
// (POST /batch/gmail/v1, multipart/mixed of application/http parts) and
// returns the answer to be read part by part. The outer request is sent
// and retried like any call; each part carries its own status.
//
// This is the provider's own code because google.golang.org/api/gmail/v1
// has no batch support (Google's Go clients never had it).
func (a *api) batch(ctx context.Context, op string, calls []innerCall) (*batchResponse, error) {
	var buf bytes.Buffer
	mw := multipart.NewWriter(&buf)
	for i, c := range calls {
		h := textproto.MIMEHeader{}
		h.Set("Content-Type", "application/http")
		h.Set("Content-ID", "<item"+strconv.Itoa(i)+">")
		w, err := mw.CreatePart(h)
		if err != nil {
			return nil, err
		}
		fmt.Fprintf(w, "%s %s HTTP/1.1\r\nHost: %s\r\n\r\n", c.method, c.target, a.cfg.root.Host)
	}
	if err := mw.Close(); err != nil {
		return nil, err
	}
	resp, err := a.send(ctx, request{
		op:     op + " (batch)",
		method: http.MethodPost,
		path:   a.cfg.root.Path + "batch/gmail/v1",
		header: http.Header{"Content-Type": {"multipart/mixed; boundary=" + mw.Boundary()}},
		body:   buf.Bytes(),
	})
	if err != nil {
		return nil, err
	}
	mt, params, err := mime.ParseMediaType(resp.Header.Get("Content-Type"))
	if err != nil || !strings.HasPrefix(mt, "multipart/") || params["boundary"] == "" {
		resp.Body.Close()
		return nil, fmt.Errorf("gmail: %s (batch): answer is %q, not multipart", op, resp.Header.Get("Content-Type"))
	}
	return &batchResponse{op: op, body: resp.Body, mr: multipart.NewReader(resp.Body, params["boundary"]), n: len(calls)}, nil
}

// batchResponse reads the parts of a batch answer in the order they come.
type batchResponse struct {
	op   string
	body io.ReadCloser
	mr   *multipart.Reader
	n    int // calls sent
	pos  int // parts read
}

// next returns the index of the call the next part answers and the
// part's HTTP response, or io.EOF after the last part. The response body
// is valid until the next call of next.
func (b *batchResponse) next() (int, *http.Response, error) {
	p, err := b.mr.NextPart()
	if err == io.EOF {
		return -1, nil, io.EOF
	}
	if err != nil {
		return -1, nil, transportError(b.op+" (batch)", err)
	}
	idx := b.pos
	b.pos++
	if id, ok := parseContentID(p.Header.Get("Content-ID")); ok {
		idx = id
	}
	if idx < 0 || idx >= b.n {
		idx = -1 // not one of ours: the caller skips it
	}
	resp, err := http.ReadResponse(bufio.NewReader(p), nil)
	if err != nil {
		return -1, nil, transportError(b.op+" (batch part)", err)
	}
	return idx, resp, nil
}

func (b *batchResponse) close() { b.body.Close() }

// parseContentID reads the call index from "<response-itemN>".
func parseContentID(s string) (int, bool) {
	s = strings.TrimSpace(s)
	s = strings.TrimSuffix(strings.TrimPrefix(s, "<"), ">")
	s = strings.TrimPrefix(s, "response-")
	s, ok := strings.CutPrefix(s, "item")
	if !ok {
		return 0, false
	}
	n, err := strconv.Atoi(s)
	return n, err == nil
}
