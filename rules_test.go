package mailsync_test

import (
	"bytes"
	"context"
	"errors"
	"fmt"
	"slices"
	"strings"
	"testing"

	"github.com/mailsync/mailsync"
)

// One Microsoft 365 mailbox with the support@ and billing@ aliases feeds two
// ticket types; spam, a blocked domain and a rule-dropped newsletter never
// become tickets; every outcome names the rules that matched.
func testRouting() mailsync.Routing {
	billing := mailsync.DefaultMapping("billing")
	return mailsync.Routing{
		Mappings: []mailsync.Mapping{billing},
		Rules: []mailsync.Rule{
			{ID: "spam", When: []mailsync.Condition{{Field: "spam.score", Op: mailsync.OpAbove, Value: "5"}}, Action: mailsync.ActionQuarantine},
			{ID: "billing-alias", When: []mailsync.Condition{{Field: "recipient", Op: mailsync.OpIs, Value: "billing@empresa.pt"}}, TicketType: "billing", Set: map[string]string{"queue": "finance"}},
			{ID: "vip", When: []mailsync.Condition{{Field: "from", Op: mailsync.OpDomain, Value: "cliente-vip.pt"}}, Set: map[string]string{"priority": "high"}, Continue: true},
			{ID: "newsletter", When: []mailsync.Condition{{Field: "header:List-Id", Op: mailsync.OpExists}, {Field: "subject", Op: mailsync.OpMatches, Value: `(?i)newsletter`}}, Action: mailsync.ActionDrop},
		},
		Blocked: mailsync.BlockList{Domains: []string{"spammer.example"}, Addresses: []string{"pest@outlook.example"}},
	}
}

func routingBox() *fakeConnector {
	f := newFake(0)
	f.conn.User = "suporte@empresa.pt"
	f.conn.ConnectedWith = []string{"incident", "billing"}
	add := func(key, raw string) { f.msgs = append(f.msgs, fakeMsg{key: key, raw: []byte(raw)}) }
	add("support", mail("ana@cliente.pt", "Impressora", "s1@cliente.pt", "Delivered-To: suporte@empresa.pt\r\n"))
	add("billing", strings.Replace(mail("rui@cliente.pt", "Fatura errada", "b1@cliente.pt", "Delivered-To: billing@empresa.pt\r\n"), "To: Suporte <suporte@empresa.pt>", "To: Faturação <billing@empresa.pt>", 1))
	add("billing-by-delivered-to", mail("rui@cliente.pt", "Outra fatura", "b2@cliente.pt", "Delivered-To: billing@empresa.pt\r\n"))
	add("spam", mail("x@random.example", "Cheap pills", "sp@random.example", "X-Spam-Status: Yes, score=7.4 required=5.0 tests=BAYES_99\r\n"))
	add("not-spam", mail("y@random.example", "Pergunta", "ns@random.example", "X-Spam-Status: No, score=1.2 required=5.0\r\n"))
	add("blocked-domain", mail("bot@mail.spammer.example", "Oferta", "bd@spammer.example"))
	add("blocked-address", mail("Pest <PEST@outlook.example>", "Again", "ba@outlook.example"))
	add("newsletter", mail("news@vendor.example", "Our November newsletter", "nl@vendor.example", "List-Id: <news.vendor.example>\r\n"))
	add("vip-billing", mail("ceo@cliente-vip.pt", "Fatura", "v1@cliente-vip.pt", "Delivered-To: billing@empresa.pt\r\n"))
	return f
}

func outcomesByKey(rep *mailsync.Report) map[string]mailsync.Outcome {
	out := map[string]mailsync.Outcome{}
	for _, o := range rep.Messages {
		out[o.Key] = o
	}
	return out
}

func TestRoutingRulesAndBlockList(t *testing.T) {
	f := routingBox()
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRouting(testRouting()))
	if err != nil {
		t.Fatal(err)
	}
	got := outcomesByKey(rep)
	want := map[string]struct {
		status     mailsync.Status
		ticketType string
		rules      []string
	}{
		"support":                 {mailsync.StatusCreated, "incident", nil},
		"billing":                 {mailsync.StatusCreated, "billing", []string{"billing-alias"}},
		"billing-by-delivered-to": {mailsync.StatusCreated, "billing", []string{"billing-alias"}},
		"spam":                    {mailsync.StatusQuarantined, "", []string{"spam"}},
		"not-spam":                {mailsync.StatusCreated, "incident", nil},
		"blocked-domain":          {mailsync.StatusDropped, "", nil},
		"blocked-address":         {mailsync.StatusDropped, "", nil},
		"newsletter":              {mailsync.StatusDropped, "", []string{"newsletter"}},
		"vip-billing":             {mailsync.StatusCreated, "billing", []string{"billing-alias"}}, // first match stops: vip comes after
	}
	for key, w := range want {
		o := got[key]
		if o.Status != w.status || o.TicketType != w.ticketType || !slices.Equal(o.Rules, w.rules) {
			t.Errorf("%s: %s %q rules %v, want %s %q rules %v", key, o.Status, o.TicketType, o.Rules, w.status, w.ticketType, w.rules)
		}
	}
	if rep.Blocked != 2 || got["blocked-domain"].Blocked != "bot@mail.spammer.example" {
		t.Errorf("blocked %d (%+v)", rep.Blocked, got["blocked-domain"])
	}
	if q := sink.QuarantinedMessages(); len(q) != 1 || !errors.Is(q[0].Err, mailsync.ErrRouted) {
		t.Errorf("quarantined: %+v", q)
	}
	types := map[string]int{}
	for _, tk := range sink.Tickets() {
		types[tk.Type]++
		if tk.Type == "billing" && tk.Fields["queue"] != "finance" {
			t.Errorf("billing ticket without the constant field: %v", tk.Fields)
		}
	}
	if types["incident"] != 2 || types["billing"] != 3 {
		t.Errorf("ticket types %v, want 2 incident and 3 billing", types)
	}
}

func TestRuleContinueAppliesLaterRules(t *testing.T) {
	r := testRouting()
	// vip first, continuing: the billing rule then also applies.
	r.Rules = append([]mailsync.Rule{r.Rules[2]}, r.Rules[0], r.Rules[1], r.Rules[3])
	f := routingBox()
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRouting(r))
	if err != nil {
		t.Fatal(err)
	}
	o := outcomesByKey(rep)["vip-billing"]
	if !slices.Equal(o.Rules, []string{"vip", "billing-alias"}) || o.TicketType != "billing" {
		t.Fatalf("vip-billing: %+v", o)
	}
	for _, tk := range sink.Tickets() {
		if tk.Source.MessageKey == "vip-billing" && (tk.Fields["priority"] != "high" || tk.Fields["queue"] != "finance") {
			t.Fatalf("fields %v, want both rules' constants", tk.Fields)
		}
	}
}

func TestRoutingValidation(t *testing.T) {
	f := routingBox()
	bad := testRouting()
	bad.Rules = append(bad.Rules,
		mailsync.Rule{ID: "x", TicketType: "change-request"},                                               // not in ConnectedWith
		mailsync.Rule{ID: "x", When: []mailsync.Condition{{Field: "subject", Op: "like", Value: "a"}}},     // duplicate id, bad op
		mailsync.Rule{ID: "y", When: []mailsync.Condition{{Field: "subject", Op: "matches", Value: "(a"}}}, // bad regexp
		mailsync.Rule{ID: "z", When: []mailsync.Condition{{Field: "spam.score", Op: "above", Value: "lots"}}, Action: "explode"},
		mailsync.Rule{ID: "w", When: []mailsync.Condition{{Field: "x-whatever", Op: "is", Value: "a"}}},
	)
	bad.Blocked.Patterns = []string{"[z-a]"}
	_, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink(), mailsync.WithRouting(bad))
	var ce *mailsync.ConfigError
	if !errors.As(err, &ce) {
		t.Fatalf("err %v, want a ConfigError", err)
	}
	for _, field := range []string{"routing.rules[4].ticket_type", "routing.rules[5].id", "routing.rules[5].when[0]", "routing.rules[6].when[0]",
		"routing.rules[7].when[0]", "routing.rules[7].action", "routing.rules[8].when[0]", "routing.blocked.patterns[0]"} {
		if !ce.Field(field) {
			t.Errorf("no problem for %s in %v", field, err)
		}
	}
	if f.lists != 0 {
		t.Fatal("a sync with a bad routing touched the mailbox")
	}
}

// A dry run lists what would happen and leaves server, state and sink untouched.
func TestDryRunTouchesNothing(t *testing.T) {
	f := routingBox()
	st := mailsync.NewMemoryState()
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRouting(testRouting()), mailsync.WithState(st),
		mailsync.WithDryRun(), mailsync.WithPostAction(mailsync.PostAction{Kind: mailsync.Delete}))
	if err != nil {
		t.Fatal(err)
	}
	if !rep.DryRun || len(sink.Tickets()) != 0 || len(sink.QuarantinedMessages()) != 0 || len(f.acked) != 0 {
		t.Fatalf("dry run stored or acknowledged: %d tickets, %d quarantined, acked %v", len(sink.Tickets()), len(sink.QuarantinedMessages()), f.acked)
	}
	if keys := st.ProcessedKeys(f.conn.Name); len(keys) != 0 {
		t.Fatalf("dry run recorded %v", keys)
	}
	if cur, _ := st.Cursor(context.Background(), f.conn.Name); cur != "" {
		t.Fatalf("dry run moved the cursor to %q", cur)
	}
	o := outcomesByKey(rep)["billing"]
	if o.Status != mailsync.StatusCreated || o.TicketType != "billing" || o.Fields["queue"] != "finance" || o.Fields["title"] != "Fatura errada" {
		t.Fatalf("preview of billing: %+v", o)
	}
	// The real sync afterwards does all of it.
	rep, err = mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRouting(testRouting()), mailsync.WithState(st))
	if err != nil || rep.Created != 5 {
		t.Fatalf("real sync after the preview: %+v %v", rep, err)
	}
}

// A message quarantined by a rule is replayed after the admin fixed the
// rule: one ticket; a second replay is a duplicate.
func TestReplayAfterRuleFix(t *testing.T) {
	f := routingBox()
	sink := mailsync.NewMemorySink()
	st := mailsync.NewMemoryState()
	strict := testRouting()
	strict.Rules[0].When[0].Value = "1" // too strict: quarantines "not-spam" (score 1.2)
	if _, err := mailsync.Sync(context.Background(), f, mapping, sink, mailsync.WithRouting(strict), mailsync.WithState(st)); err != nil {
		t.Fatal(err)
	}
	var raw []byte
	for _, q := range sink.QuarantinedMessages() {
		if q.Source.MessageKey == "not-spam" {
			raw = q.Raw.Data
		}
	}
	if raw == nil {
		t.Fatalf("not-spam was not quarantined: %+v", sink.QuarantinedMessages())
	}
	before := len(sink.Tickets())
	for i, want := range []mailsync.Status{mailsync.StatusCreated, mailsync.StatusDuplicate} {
		o, err := mailsync.Replay(context.Background(), f.conn, "not-spam", bytes.NewReader(raw), mapping, sink,
			mailsync.WithRouting(testRouting()), mailsync.WithState(st))
		if err != nil || o.Status != want {
			t.Fatalf("replay %d: %+v %v, want %s", i+1, o, err, want)
		}
	}
	if n := len(sink.Tickets()); n != before+1 {
		t.Fatalf("%d tickets after two replays, want %d", n, before+1)
	}
	if cur, _ := st.Cursor(context.Background(), f.conn.Name); cur != mailsync.Cursor(fmt.Sprint(len(f.msgs))) {
		t.Fatalf("replay changed the connection's cursor: %q", cur)
	}
}

// The literal prefilter in front of "matches" must never hide a match.
func TestRuleRegexpPrefilterIsSound(t *testing.T) {
	cases := []struct {
		pattern, subject string
		want             bool
	}{
		{`(?i)\binvoice\s+#12\b`, "INVOICE   #12 overdue", true},
		{`(?i)\binvoice\s+#12\b`, "Invoice #13", false},
		{`(?i)urgent`, "URGENT: printer", true},
		{`(?i)kelvin`, "\u212aELVIN", true}, // the Kelvin sign folds to k
		{`(?i)sos`, "\u017foS", true},       // the long s folds to s
		{`Fatura nº \d+`, "Fatura nº 118", true},
		{`(?i)fatura`, "FATURAÇÃO", true},
		{`a|bcd`, "xax", true},
	}
	for _, tc := range cases {
		f := newFake(0)
		f.msgs = append(f.msgs, fakeMsg{key: "m", raw: []byte(mail("a@b.pt", tc.subject, "m@b.pt"))})
		r := mailsync.Routing{Rules: []mailsync.Rule{{ID: "r", When: []mailsync.Condition{{Field: "subject", Op: mailsync.OpMatches, Value: tc.pattern}}, Action: mailsync.ActionDrop}}}
		rep, err := mailsync.Sync(context.Background(), f, mapping, mailsync.NewMemorySink(), mailsync.WithRouting(r))
		if err != nil {
			t.Fatal(err)
		}
		if got := rep.Messages[0].Status == mailsync.StatusDropped; got != tc.want {
			t.Errorf("%q on %q: matched %v, want %v", tc.pattern, tc.subject, got, tc.want)
		}
	}
}

// A host may list the mappings of every ticket type, Sync's own included.
func TestRoutingMappingsMayIncludeTheDefault(t *testing.T) {
	r := testRouting()
	other := mapping
	other.Fields = other.Fields[:1] // a different mapping of the same type: Sync's argument wins
	r.Mappings = append(r.Mappings, other)
	sink := mailsync.NewMemorySink()
	rep, err := mailsync.Sync(context.Background(), routingBox(), mapping, sink, mailsync.WithRouting(r))
	if err != nil || rep.Created != 5 {
		t.Fatalf("%+v %v", rep, err)
	}
	for _, tk := range sink.Tickets() {
		if tk.Type == "incident" && tk.Fields["title"] == "" {
			t.Fatalf("the routing's copy of the default mapping was used: %v", tk.Fields)
		}
	}
}
