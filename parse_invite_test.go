package mailsync

import (
	"strings"
	"testing"
	"time"
)

// An Outlook-style meeting request: the event's summary, start, end,
// organizer and location become mapping fields; the .ics stays an attachment.
func TestParseCalendarInvite(t *testing.T) {
	ics := "BEGIN:VCALENDAR\r\nPRODID:-//Microsoft Corporation//Outlook 16.0 MIMEDIR//EN\r\nVERSION:2.0\r\nMETHOD:REQUEST\r\n" +
		"BEGIN:VTIMEZONE\r\nTZID:UTC\r\nEND:VTIMEZONE\r\n" +
		"BEGIN:VEVENT\r\nORGANIZER;CN=\"Silva, Ana\":mailto:ana.silva@cliente.pt\r\nATTENDEE;ROLE=REQ-PARTICIPANT:mailto:suporte@empresa.pt\r\n" +
		"DESCRIPTION:Revis\\u00e3o do contrato\\nSegunda linha\r\n" +
		"SUMMARY;LANGUAGE=pt-PT:Revisão do contrato de suporte\\, fase 2 (sala\r\n  3)\r\n" +
		"DTSTART;TZID=Europe/Lisbon:20261203T100000\r\nDTEND;TZID=Europe/Lisbon:20261203T113000\r\n" +
		"LOCATION:Sala 3\\; piso 2\r\nUID:040000008200E00074C5B7101A82E008000000001\r\n" +
		"BEGIN:VALARM\r\nACTION:DISPLAY\r\nSUMMARY:not the event\r\nTRIGGER:-PT15M\r\nEND:VALARM\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
	raw := "From: Ana Silva <ana.silva@cliente.pt>\r\nTo: suporte@empresa.pt\r\nSubject: Revisão do contrato\r\nMIME-Version: 1.0\r\n" +
		"Content-Type: multipart/alternative; boundary=b\r\n\r\n" +
		"--b\r\nContent-Type: text/plain; charset=utf-8\r\n\r\nConvite para reunião.\r\n" +
		"--b\r\nContent-Type: text/calendar; charset=utf-8; method=REQUEST\r\nContent-Transfer-Encoding: 8bit\r\n\r\n" + ics + "--b--\r\n"
	m := parseGap(t, raw)
	inv := m.Invite
	if inv == nil {
		t.Fatal("no invite")
	}
	lisbon, err := time.LoadLocation("Europe/Lisbon")
	if err != nil {
		lisbon = time.UTC // no zone data on this machine: read as UTC
	}
	wantStart := time.Date(2026, 12, 3, 10, 0, 0, 0, lisbon)
	if inv.Summary != "Revisão do contrato de suporte, fase 2 (sala 3)" || inv.Organizer != "ana.silva@cliente.pt" ||
		inv.Location != "Sala 3; piso 2" || inv.Method != "REQUEST" || !inv.Start.Equal(wantStart) ||
		!inv.End.Equal(wantStart.Add(90*time.Minute)) || inv.AllDay {
		t.Fatalf("invite %+v", inv)
	}
	fields := Mapping{TicketType: "x", Fields: []FieldMapping{
		{Ticket: "title", Source: FieldInviteSummary}, {Ticket: "start", Source: FieldInviteStart},
		{Ticket: "organizer", Source: FieldInviteOrganizer}, {Ticket: "files", Source: FieldAttachments}}}.Apply(m)
	if fields["title"] != inv.Summary || !strings.HasPrefix(fields["start"], "2026-12-03T10:00:00") || fields["organizer"] != "ana.silva@cliente.pt" || fields["files"] != "invite.ics" {
		t.Fatalf("mapped %v", fields)
	}
	if err := (Mapping{TicketType: "x", Fields: []FieldMapping{{Ticket: "t", Source: FieldInviteEnd}}}).Validate(); err != nil {
		t.Fatal(err)
	}
	// An all-day event, and a mail without an invite.
	allDay := strings.Replace(strings.Replace(raw, "DTSTART;TZID=Europe/Lisbon:20261203T100000", "DTSTART;VALUE=DATE:20261224", 1), "DTEND;TZID=Europe/Lisbon:20261203T113000", "DTEND;VALUE=DATE:20261225", 1)
	m = parseGap(t, allDay)
	if !m.Invite.AllDay || SourceValue(m, FieldInviteStart) != "2026-12-24" {
		t.Fatalf("all-day: %+v %q", m.Invite, SourceValue(m, FieldInviteStart))
	}
	m = parseGap(t, "From: a@b.pt\r\nSubject: s\r\n\r\nx\r\n")
	if m.Invite != nil || SourceValue(m, FieldInviteSummary) != "" {
		t.Fatal("invite from a plain mail")
	}
}
