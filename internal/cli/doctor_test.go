package cli

import (
	"net/http"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

// doctor's set-aside records and prune: list, show as stored, drop,
// prune; the options exclude each other.
func TestDoctorSetAside(t *testing.T) {
	rec := api.SetAsideRecord{ID: "endpoints/6f1c2e4a-0000-4000-8000-000000000001", Kind: "Endpoint", Key: "6f1c2e4a-0000-4000-8000-000000000001",
		Name: "web", Reason: "it does not decode: unexpected end of JSON input", Time: time.Date(2026, 11, 27, 13, 28, 0, 0, time.UTC),
		Devices: []string{"hnv0123456789ab"}, Size: 9}
	mux := http.NewServeMux()
	mux.HandleFunc("GET /setaside", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, []api.SetAsideRecord{rec}) })
	mux.HandleFunc("GET /setaside/{ref...}", func(w http.ResponseWriter, r *http.Request) {
		if r.PathValue("ref") != rec.ID {
			answer(w, 404, api.ErrorResponse{Error: "set-aside record not found", ErrorCode: api.CodeElementNotFound})
			return
		}
		withRecord := rec
		withRecord.Record = []byte(`{"Doc":{`)
		answer(w, 200, withRecord)
	})
	mux.HandleFunc("DELETE /setaside/{ref...}", func(w http.ResponseWriter, r *http.Request) { answer(w, 200, rec) })
	mux.HandleFunc("POST /prune", func(w http.ResponseWriter, r *http.Request) {
		answer(w, 200, api.PruneReport{Removed: []api.Problem{{Kind: "Device", Name: "hnv0123456789ab", Problem: "device hnv0123456789ab is hostnet's but no network or endpoint claims it"}}})
	})
	d := newFakeDaemon(t, mux)

	out, errOut, code := runCLI(t, d.socket, "", "doctor", "--set-aside")
	if code != 0 || !strings.Contains(out, rec.ID) || !strings.Contains(out, "it does not decode") || !strings.Contains(out, "SET ASIDE") {
		t.Errorf("--set-aside: code %d, stderr %q:\n%s", code, errOut, out)
	}
	out, _, code = runCLI(t, d.socket, "", "doctor", "--set-aside", "-o", "wide")
	if code != 0 || !strings.Contains(out, "hnv0123456789ab") {
		t.Errorf("--set-aside -o wide:\n%s", out)
	}
	out, errOut, code = runCLI(t, d.socket, "", "doctor", "--show-set-aside", rec.ID)
	if code != 0 || out != "{\"Doc\":{\n" {
		t.Errorf("--show-set-aside: code %d, stderr %q: %q", code, errOut, out)
	}
	if _, _, code = runCLI(t, d.socket, "", "doctor", "--show-set-aside", "nothing"); code != 1 {
		t.Errorf("--show-set-aside of what is not there: code %d", code)
	}
	out, errOut, code = runCLI(t, d.socket, "", "doctor", "--drop-set-aside", rec.ID)
	if code != 0 || !strings.Contains(out, "dropped set-aside endpoint web ("+rec.ID+")") {
		t.Errorf("--drop-set-aside: code %d, stderr %q:\n%s", code, errOut, out)
	}
	if r, ok := d.find("DELETE", "/setaside/"+rec.ID); !ok {
		t.Errorf("--drop-set-aside sent no DELETE: %+v (%v)", d.requests(), r)
	}
	out, errOut, code = runCLI(t, d.socket, "", "doctor", "--prune")
	if code != 0 || !strings.Contains(out, "REMOVED") || !strings.Contains(out, "hnv0123456789ab") {
		t.Errorf("--prune: code %d, stderr %q:\n%s", code, errOut, out)
	}
	_, errOut, code = runCLI(t, d.socket, "", "doctor", "--prune", "--set-aside")
	if code == 0 || !strings.Contains(errOut, "none of the others") {
		t.Errorf("--prune with --set-aside: code %d, stderr %q", code, errOut)
	}
}
