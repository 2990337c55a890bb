// Package fuzzapi is a black-box fuzzer of hostnetd's API (issue 22, item
// 5). It starts hostnetd as test/e2e does, in a throwaway "host" network
// namespace with an "external" namespace behind its uplink, sends it
// mutated HCN documents of every kind interleaved with valid operations,
// and after each batch restarts the daemon and checks that nothing it
// accepted broke it:
//
//   - it starts, and logs no ERROR while it starts;
//   - GET /check answers, in sync;
//   - a fresh endpoint attaches and reaches the external namespace over
//     TCP, publishing the host ports of endpoints deleted before (they
//     must be free), which a socket can then bind;
//   - no request was answered 5xx, none took seconds.
//
// After every accepted change it also checks that GET /check and the lists
// still answer (a stored record that no longer decodes breaks them). A
// violated invariant is a poison: the fuzzer finds the request that
// caused it by replaying the history of that host on new hosts (every
// object the fuzzer creates carries its own ID, so a replay refers to the
// same objects), reports it with the requests that reproduce it, and goes
// on with a new host.
//
// It runs only when asked (make fuzz-api; FUZZ_API=1):
//
//	FUZZ_API_REQUESTS  requests over all seeds (default 600)
//	FUZZ_API_SEEDS     comma-separated seeds (default 1)
//	FUZZ_API_BATCH     requests between restarts (default 150)
//	FUZZ_API_SLOW      a request slower than this is reported (default 2s)
//	FUZZ_API_OUT       where each finding's reproduction is written
//	                   (default a new directory under /tmp)
//	FUZZ_API_LOG       a file to log every request and its status to
package fuzzapi

import (
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"math/rand"
	"net"
	"net/http"
	"net/url"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"sort"
	"strconv"
	"strings"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/testutil/lab"
)

var (
	baseDir     string
	hostnetdBin string
)

func TestMain(m *testing.M) {
	os.Exit(run(m))
}

func run(m *testing.M) int {
	if os.Getenv("FUZZ_API") == "" || os.Geteuid() != 0 {
		return m.Run() // TestFuzzAPI skips
	}
	var err error
	if baseDir, err = os.MkdirTemp("", "hnt-fuzzapi-"); err != nil {
		fmt.Fprintln(os.Stderr, err)
		return 1
	}
	defer os.RemoveAll(baseDir)
	hostnetdBin = filepath.Join(baseDir, "hostnetd")
	cmd := exec.Command("go", "build", "-o", hostnetdBin, "../../cmd/hostnetd")
	cmd.Stdout, cmd.Stderr = os.Stderr, os.Stderr
	if err := cmd.Run(); err != nil {
		fmt.Fprintf(os.Stderr, "build hostnetd: %v\n", err)
		return 1
	}
	return m.Run()
}

type config struct {
	requests int
	seeds    []int64
	batch    int
	slow     time.Duration
	out      string
}

func readConfig(t *testing.T) config {
	c := config{requests: 600, seeds: []int64{1}, batch: 150, slow: 2 * time.Second}
	fromEnv(t, "FUZZ_API_REQUESTS", &c.requests, positive)
	fromEnv(t, "FUZZ_API_SEEDS", &c.seeds, seedList)
	fromEnv(t, "FUZZ_API_BATCH", &c.batch, positive)
	fromEnv(t, "FUZZ_API_SLOW", &c.slow, time.ParseDuration)
	c.out = os.Getenv("FUZZ_API_OUT")
	if c.out == "" {
		c.out = filepath.Join(os.TempDir(), "hostnet-fuzz-api-"+time.Now().Format("20060102-150405"))
	}
	return c
}

// fromEnv sets *into from the environment variable name when that is
// set; a value parse rejects fails the test, saying why.
func fromEnv[T any](t *testing.T, name string, into *T, parse func(string) (T, error)) {
	t.Helper()
	v := os.Getenv(name)
	if v == "" {
		return
	}
	x, err := parse(v)
	if err != nil {
		t.Fatalf("%s=%q: %v", name, v, err)
	}
	*into = x
}

func positive(v string) (int, error) {
	n, err := strconv.Atoi(v)
	if err != nil || n < 1 {
		return 0, errors.New("want a positive number")
	}
	return n, nil
}

func seedList(v string) ([]int64, error) {
	var seeds []int64
	for _, s := range strings.Split(v, ",") {
		n, err := strconv.ParseInt(strings.TrimSpace(s), 10, 64)
		if err != nil {
			return nil, errors.New("want comma-separated numbers")
		}
		seeds = append(seeds, n)
	}
	return seeds, nil
}

// sent is a request as sent, with what it was answered.
type sent struct {
	Req    request `json:"request"`
	Status int     `json:"status"`
	// Assigned is the ID the daemon gave an object created without one
	// (a replay maps it to the one the replay's daemon gives).
	Assigned string `json:"assigned,omitempty"`
}

// finding is something the fuzzer reports.
type finding struct {
	Kind      string   `json:"kind"` // poison, 5xx, slow
	Signature string   `json:"signature"`
	Detail    string   `json:"detail"`
	Culprit   *request `json:"culprit,omitempty"`
	Alone     bool     `json:"reproducesAlone"` // the culprit alone, on a new host, reproduces it
	Replay    []sent   `json:"replay,omitempty"`
	Seed      int64    `json:"seed"`
	Count     int      `json:"count"`
}

type fuzzer struct {
	t        *testing.T
	cfg      config
	seed     int64
	g        *gen
	env      *Env
	hist     []sent    // mutating requests sent to this host
	freed    []portKey // host ports of endpoints deleted on this host
	findings map[string]*finding
	order    []string

	requests, fiveXX, slow, restarts, hosts, replays int
	status                                           map[int]int // requests by status class (2, 4, 5)
	log                                              io.Writer   // FUZZ_API_LOG: every request and its status
}

func TestFuzzAPI(t *testing.T) {
	if os.Getenv("FUZZ_API") == "" {
		t.Skip("the API fuzzer runs with FUZZ_API=1 (make fuzz-api)")
	}
	if os.Geteuid() != 0 {
		t.Skip("the API fuzzer needs root (network namespaces)")
	}
	cfg := readConfig(t)
	f := &fuzzer{t: t, cfg: cfg, findings: map[string]*finding{}, status: map[int]int{}}
	if p := os.Getenv("FUZZ_API_LOG"); p != "" {
		lf, err := os.Create(p)
		if err != nil {
			t.Fatal(err)
		}
		defer lf.Close()
		f.log = lf
	}
	per := cfg.requests / len(cfg.seeds)
	start := time.Now()
	for i, seed := range cfg.seeds {
		n := per
		if i == len(cfg.seeds)-1 {
			n = cfg.requests - per*(len(cfg.seeds)-1)
		}
		f.runSeed(seed, n)
	}
	f.report(time.Since(start))
}

// runSeed sends n requests generated from seed.
func (f *fuzzer) runSeed(seed int64, n int) {
	f.seed = seed
	f.g = &gen{r: rand.New(rand.NewSource(seed)), m: &model{}}
	sentHere := 0
	for sentHere < n {
		if f.env == nil {
			if err := f.newHost(); err != nil {
				f.t.Fatalf("new host: %v", err)
			}
		}
		batch := min(f.cfg.batch, n-sentHere)
		poisoned := false
		for i := 0; i < batch && !poisoned; i++ {
			req := f.g.next()
			s, dur := f.send(f.env, req, nil)
			sentHere++
			f.requests++
			f.status[s.Status/100]++
			if s.Status == 0 {
				continue // not sent
			}
			if s.Status >= 500 {
				f.fiveXX++
				f.record("5xx", req.Method+" "+pathPattern(req.Path)+": "+normalize(s.errText), s.errText, &req, nil)
			}
			if dur > f.cfg.slow {
				f.slow++
				f.record("slow", fmt.Sprintf("%s %s took more than %s", req.Method, pathPattern(req.Path), f.cfg.slow),
					fmt.Sprintf("took %s", dur.Round(time.Millisecond)), &req, nil)
			}
			if !req.mutating() {
				continue
			}
			f.hist = append(f.hist, s.sent)
			f.learn(req, s)
			if s.Status < 300 || s.Status >= 500 {
				if p := f.quickCheck(f.env); p != "" {
					f.poison(p, &req, false)
					poisoned = true
				}
			}
		}
		if poisoned {
			continue
		}
		known := map[string][]portKey{}
		for _, e := range f.g.m.eps {
			known[e.ID] = e.Ports
		}
		if probs := f.restartAndCheck(f.env, f.freed, known); len(probs) > 0 {
			for _, p := range probs {
				f.poison(p, nil, true)
			}
			f.dropHost()
			continue
		}
		if err := f.resync(); err != nil {
			f.poison("lists after a restart: "+err.Error(), nil, true)
			f.dropHost()
		}
	}
	f.dropHost()
}

// newHost makes a new host, its probe network, and an empty model.
func (f *fuzzer) newHost() error {
	env, err := newEnv(baseDir)
	if err != nil {
		return err
	}
	probe, err := setupProbe(env)
	if err != nil {
		env.Close()
		return err
	}
	f.env, f.hist, f.freed = env, nil, nil
	f.g.m = &model{probe: probe}
	f.g.subnets = 0
	f.hosts++
	return nil
}

func (f *fuzzer) dropHost() {
	if f.env != nil {
		f.env.Close()
		f.env = nil
	}
}

// The probe network: where fresh endpoints are attached after each
// restart. The fuzzer never names it (its subnet is outside the fuzzer's
// pool, and its name is not among the values mutations use).
const probeSubnet = "10.250.0.0/24"

func setupProbe(env *Env) (string, error) {
	doc := `{"Name":"fuzz-probe-net","Ipams":[{"Subnets":[{"IpAddressPrefix":"` + probeSubnet + `"}]}]}`
	status, body, err := env.do("POST", "/networks", doc)
	if err != nil || status != http.StatusCreated {
		return "", fmt.Errorf("create the probe network: %d %s %v", status, body, err)
	}
	var n api.Network
	if err := json.Unmarshal(body, &n); err != nil {
		return "", err
	}
	return n.ID, nil
}

// do sends one request to the daemon of env.
func (e *Env) do(method, path, body string) (int, []byte, error) {
	var rd io.Reader
	if body != "" {
		rd = strings.NewReader(body)
	}
	req, err := http.NewRequest(method, "http://hostnetd"+path, rd)
	if err != nil {
		return 0, nil, err
	}
	resp, err := e.http.Do(req)
	if err != nil {
		return 0, nil, err
	}
	defer resp.Body.Close()
	b, err := io.ReadAll(resp.Body)
	return resp.StatusCode, b, err
}

type answer struct {
	sent
	body    []byte
	errText string
}

// send sends req to env, mapping the IDs of ids (a replay's) first, and
// returns what it was answered and how long it took. A request the
// daemon never answered counts as a 599.
func (f *fuzzer) send(env *Env, req request, ids map[string]string) (answer, time.Duration) {
	for from, to := range ids {
		req.Path = strings.ReplaceAll(req.Path, from, to)
		req.Body = strings.ReplaceAll(req.Body, from, to)
	}
	start := time.Now()
	status, body, err := env.do(req.Method, req.Path, req.Body)
	dur := time.Since(start)
	a := answer{sent: sent{Req: req, Status: status}, body: body}
	if err != nil {
		a.Status, a.errText = 599, "no answer: "+err.Error()
		var uerr *url.Error
		if errors.As(err, &uerr) && uerr.Op == "parse" {
			a.Status = 0 // the fuzzer's own request could not be made
		}
	}
	if f.log != nil {
		fmt.Fprintf(f.log, "%d %s %s %s | %s\n", a.Status, req.Method, req.Path, collapse(req.Body), collapse(a.errText))
	}
	if err != nil {
		return a, dur
	}
	if status >= 300 {
		var er api.ErrorResponse
		if json.Unmarshal(body, &er) == nil && er.Error != "" {
			a.errText = er.Error
		} else {
			a.errText = strings.TrimSpace(string(body))
		}
	}
	if req.Method == "POST" && status < 300 {
		var doc struct{ ID string }
		var in struct{ ID string }
		_ = json.Unmarshal(body, &doc)
		_ = json.Unmarshal([]byte(req.Body), &in)
		if doc.ID != "" && !strings.EqualFold(doc.ID, in.ID) {
			a.Assigned = doc.ID
		}
	}
	return a, dur
}

// learn updates the model from an answer.
func (f *fuzzer) learn(req request, a answer) {
	if a.Status >= 300 {
		return
	}
	m := f.g.m
	switch {
	case req.Method == "DELETE":
		// The lists below tell what went (and free its ports).
	case strings.HasPrefix(req.Path, "/networks"):
		var n api.Network
		if json.Unmarshal(a.body, &n) == nil && n.ID != "" {
			m.addNetwork(&n)
		}
		return
	case strings.HasPrefix(req.Path, "/endpoints"):
		var e api.Endpoint
		if json.Unmarshal(a.body, &e) == nil && e.ID != "" {
			if old := m.endpoint(e.ID); old != nil {
				f.freePorts(old.Ports, endpointPorts(&e))
			}
			m.addEndpoint(&e)
		}
		if req.Method == "POST" {
			_ = f.resync() // the request may have made a namespace
		}
		return
	case strings.HasPrefix(req.Path, "/namespaces"):
		var n api.Namespace
		if json.Unmarshal(a.body, &n) == nil && n.ID != "" {
			m.addNamespace(&n)
		}
		if req.Method == "PATCH" {
			_ = f.resync() // attachments changed endpoints
		}
		return
	}
	_ = f.resync()
}

// freePorts notes the ports of before that after no longer publishes.
func (f *fuzzer) freePorts(before, after []portKey) {
	kept := map[portKey]bool{}
	for _, p := range after {
		kept[p] = true
	}
	for _, p := range before {
		if !kept[p] {
			f.freed = append(f.freed, p)
		}
	}
}

// resync rebuilds the model from the daemon's lists; endpoints that are
// gone free their ports.
func (f *fuzzer) resync() error {
	var nets []api.Network
	var eps []api.Endpoint
	var nss []api.Namespace
	for _, l := range []struct {
		path string
		v    any
	}{{"/networks", &nets}, {"/endpoints", &eps}, {"/namespaces", &nss}} {
		status, body, err := f.env.do("GET", l.path, "")
		if err != nil {
			return err
		}
		if status != http.StatusOK {
			return fmt.Errorf("GET %s answers %d: %s", l.path, status, strings.TrimSpace(string(body)))
		}
		if err := json.Unmarshal(body, l.v); err != nil {
			return fmt.Errorf("GET %s: %v", l.path, err)
		}
	}
	live := map[string]bool{}
	for _, e := range eps {
		live[e.ID] = true
	}
	for _, e := range f.g.m.eps {
		if !live[e.ID] {
			f.freed = append(f.freed, e.Ports...)
		}
	}
	f.g.m.refresh(nets, eps, nss)
	return nil
}

// quickCheck is what must hold after every accepted change: the check and
// the lists answer, and the documents carry their policies' types as the
// names this build supports (what is stored is what is enforced). It
// returns a problem, or "".
func (f *fuzzer) quickCheck(env *Env) string {
	for _, p := range []string{"/check", "/networks", "/endpoints", "/namespaces"} {
		status, body, err := env.do("GET", p, "")
		if err != nil {
			return fmt.Sprintf("GET %s: no answer: %v", p, err)
		}
		if status >= 500 {
			var er api.ErrorResponse
			_ = json.Unmarshal(body, &er)
			return fmt.Sprintf("GET %s answers %d: %s", p, status, er.Error)
		}
		if p := storedTypes(env, p, body); p != "" {
			return p
		}
	}
	return ""
}

// storedTypes checks the policy types of a list's documents against the
// names the daemon says it supports.
func storedTypes(env *Env, path string, body []byte) string {
	if path != "/networks" && path != "/endpoints" {
		return ""
	}
	if env.supported == nil {
		status, vb, err := env.do("GET", "/version", "")
		var v api.VersionInfo
		if err != nil || status != http.StatusOK || json.Unmarshal(vb, &v) != nil {
			return ""
		}
		env.supported = map[api.PolicyType]bool{}
		for _, t := range append(append(v.Supported.NetworkPolicies, v.Supported.EndpointPolicies...), v.Supported.SubnetPolicies...) {
			env.supported[t] = true
		}
	}
	var docs []struct {
		ID       string
		Policies []api.Policy
	}
	if json.Unmarshal(body, &docs) != nil {
		return ""
	}
	for _, d := range docs {
		for _, p := range d.Policies {
			if !env.supported[p.Type] {
				return fmt.Sprintf("GET %s: a stored policy has Type %q, not the name of a supported policy type (stored unresolved, so not enforced)", path, p.Type)
			}
		}
	}
	return ""
}

// namesCheck checks that every named object is reached by its name.
func namesCheck(env *Env) []string {
	var probs []string
	for _, kind := range []string{"networks", "endpoints", "namespaces"} {
		status, body, err := env.do("GET", "/"+kind, "")
		if err != nil || status != http.StatusOK {
			continue // reported by the check of the lists
		}
		var docs []struct{ ID, Name string }
		if json.Unmarshal(body, &docs) != nil {
			continue
		}
		for _, d := range docs {
			if d.Name == "" {
				continue
			}
			status, body, err := env.do("GET", "/"+kind+"/"+url.PathEscape(d.Name), "")
			var got struct{ ID string }
			_ = json.Unmarshal(body, &got)
			switch {
			case err != nil:
			case status == http.StatusOK && got.ID == "":
				probs = append(probs, fmt.Sprintf("GET /%s/{name} does not reach the object named %.60q (%s)", kind, d.Name, d.ID))
			case status == http.StatusOK && got.ID != d.ID:
				probs = append(probs, fmt.Sprintf("GET /%s/{name} reaches another object: the name %.60q of %s leads to %s", kind, d.Name, d.ID, got.ID))
			case status != http.StatusOK:
				probs = append(probs, fmt.Sprintf("GET /%s/{name} answers %d for an object's own name %.60q", kind, status, d.Name))
			}
		}
	}
	return probs
}

// restartAndCheck restarts the daemon of env and checks the invariants.
// freed are host ports of deleted endpoints; known, the ports of the
// endpoints there were before the restart (those it drops free theirs).
func (f *fuzzer) restartAndCheck(env *Env, freed []portKey, known map[string][]portKey) []string {
	f.restarts++
	env.Stop()
	offset := env.LogSize()
	if err := env.Start(); err != nil {
		return []string{"the daemon does not start: " + firstLine(err.Error())}
	}
	if status, body, err := env.do("GET", "/endpoints", ""); err == nil && status == http.StatusOK {
		var eps []api.Endpoint
		if json.Unmarshal(body, &eps) == nil {
			live := map[string]bool{}
			for _, e := range eps {
				live[e.ID] = true
			}
			for id, ps := range known {
				if !live[id] {
					freed = append(freed, ps...)
				}
			}
		}
	}
	var probs []string
	// Self-repair of what changed while the daemon was down runs after the
	// API is served: the check may take a moment to settle.
	var last string
	deadline := time.Now().Add(5 * time.Second)
	for {
		status, body, err := env.do("GET", "/check", "")
		switch {
		case err != nil:
			last = "GET /check: no answer: " + err.Error()
		case status != http.StatusOK:
			var er api.ErrorResponse
			_ = json.Unmarshal(body, &er)
			last = fmt.Sprintf("GET /check answers %d: %s", status, er.Error)
		default:
			var rep api.CheckReport
			if err := json.Unmarshal(body, &rep); err != nil {
				last = "GET /check: " + err.Error()
			} else if !rep.InSync {
				var ps []string
				for _, p := range rep.Problems {
					ps = append(ps, p.Kind+" "+p.Name+": "+p.Problem)
				}
				sort.Strings(ps)
				last = "not in sync after a restart: " + strings.Join(ps, "; ")
			} else {
				last = ""
			}
		}
		if last == "" || time.Now().After(deadline) {
			break
		}
		time.Sleep(250 * time.Millisecond)
	}
	if last != "" {
		probs = append(probs, last)
	}
	for _, l := range strings.Split(env.LogSince(offset), "\n") {
		if strings.Contains(l, "level=ERROR") {
			probs = append(probs, "ERROR logged at start: "+logMessage(l))
		}
	}
	if p := f.probe(env, freed); p != "" {
		probs = append(probs, p)
	}
	return append(probs, namesCheck(env)...)
}

// probe attaches a fresh endpoint to a fresh namespace on the probe
// network, publishing the freed ports that no live endpoint publishes,
// checks that it reaches the outside, deletes both, and checks that the
// freed ports can be bound on the host.
func (f *fuzzer) probe(env *Env, freed []portKey) string {
	ctx, cancel := context.WithTimeout(context.Background(), time.Minute)
	defer cancel()
	c := env.Client()
	live, err := c.ListEndpoints(ctx, nil)
	if err != nil {
		return "fresh endpoint: list endpoints: " + err.Error()
	}
	taken := map[portKey]bool{}
	for i := range live {
		for _, p := range endpointPorts(&live[i]) {
			taken[portKey{p.Proto, p.Port, false}] = true
			taken[portKey{p.Proto, p.Port, true}] = true
		}
	}
	var ports []portKey
	var policies []api.Policy
	for _, p := range freed {
		if taken[p] || len(ports) >= 16 {
			continue
		}
		taken[p] = true
		ports = append(ports, p)
		proto, flags := 6, 0
		if p.Proto == "udp" {
			proto = 17
		}
		if p.IPv6 {
			flags = 2
		}
		b, _ := json.Marshal(api.PortMappingSettings{Protocol: uint32(proto), InternalPort: 80, ExternalPort: p.Port, Flags: uint32(flags)})
		policies = append(policies, api.Policy{Type: api.PortMapping, Settings: b})
	}
	ns, err := c.CreateNamespace(ctx, &api.Namespace{})
	if err != nil {
		return "fresh endpoint: create a namespace: " + err.Error()
	}
	defer func() { _ = c.DeleteNamespace(context.Background(), ns.ID) }()
	ep, err := c.CreateEndpoint(ctx, &api.Endpoint{HostComputeNetwork: f.g.m.probe, Policies: policies})
	if err != nil {
		if len(policies) > 0 && api.IsConflict(err) {
			return "a published port of a deleted endpoint is still claimed: " + err.Error()
		}
		return "fresh endpoint: create: " + err.Error()
	}
	defer func() { _ = c.DeleteEndpoint(context.Background(), ep.ID) }()
	if _, err := c.Attach(ctx, ns.ID, ep.ID); err != nil {
		return "fresh endpoint: attach: " + err.Error()
	}
	var reachErr error
	for try := 0; try < 3; try++ {
		if reachErr = reach(ns.NetNamespacePath); reachErr == nil {
			break
		}
		time.Sleep(300 * time.Millisecond)
	}
	if reachErr != nil {
		return "fresh endpoint does not reach the external namespace: " + reachErr.Error()
	}
	if err := c.DeleteEndpoint(ctx, ep.ID); err != nil {
		return "fresh endpoint: delete: " + err.Error()
	}
	for _, p := range ports {
		if err := bindPort(env.HostNS, p); err != nil {
			return fmt.Sprintf("host port %s/%d of a deleted endpoint cannot be bound: %v", p.Proto, p.Port, err)
		}
	}
	return ""
}

// bindPort binds a host port in the host namespace, and closes it.
func bindPort(hostNS string, p portKey) error {
	host := "0.0.0.0"
	if p.IPv6 {
		host = "::"
	}
	addr := net.JoinHostPort(host, strconv.Itoa(int(p.Port)))
	return lab.In(hostNS, func() error {
		if p.Proto == "udp" {
			c, err := net.ListenPacket("udp", addr)
			if err != nil {
				return err
			}
			return c.Close()
		}
		l, err := net.Listen("tcp", addr)
		if err != nil {
			return err
		}
		return l.Close()
	})
}

// poison records a violated invariant. culprit is the request after which
// it was seen, when known; afterRestart says it was seen after a restart.
// The history of the host is replayed on new hosts to find the request
// that causes it and whether it does so alone.
func (f *fuzzer) poison(problem string, culprit *request, afterRestart bool) {
	sig := normalize(problem)
	if fd, ok := f.findings["poison "+sig]; ok {
		fd.Count++
		f.dropHost()
		return
	}
	hist := append([]sent(nil), f.hist...)
	f.dropHost()
	f.t.Logf("poison: %s; looking for its cause in %d requests", problem, len(hist))
	fd := &finding{Kind: "poison", Signature: sig, Detail: problem, Seed: f.seed, Count: 1}
	k := len(hist)
	if culprit == nil || afterRestart {
		k = f.bisect(hist, sig)
		// A refused request changes nothing: the cause is the last
		// request before it that was accepted (or failed half-way).
		for k > 1 && hist[k-1].Status >= 400 && hist[k-1].Status < 500 {
			k--
		}
	}
	if k > 0 {
		c := hist[k-1].Req
		fd.Culprit = &c
		fd.Replay = hist[:k]
		fd.Alone = f.reproduces([]sent{hist[k-1]}, sig, afterRestart)
	} else if culprit != nil {
		fd.Culprit = culprit
		fd.Replay = hist
	}
	f.findings["poison "+sig] = fd
	f.order = append(f.order, "poison "+sig)
}

// bisect returns the length of the shortest prefix of hist that
// reproduces the poison sig, or 0 when the whole history does not.
func (f *fuzzer) bisect(hist []sent, sig string) int {
	if !f.reproduces(hist, sig, true) {
		return 0
	}
	lo, hi := 0, len(hist) // hist[:lo] does not reproduce, hist[:hi] does
	for hi-lo > 1 {
		mid := (lo + hi) / 2
		if f.reproduces(hist[:mid], sig, true) {
			hi = mid
		} else {
			lo = mid
		}
	}
	return hi
}

// reproduces replays hist on a new host and tells whether the poison sig
// shows, right after the last request or after a restart.
func (f *fuzzer) reproduces(hist []sent, sig string, restart bool) bool {
	f.replays++
	defer func(n int) { f.restarts = n }(f.restarts) // a replay's restart is not the run's
	env, err := newEnv(baseDir)
	if err != nil {
		f.t.Logf("replay: new host: %v", err)
		return false
	}
	defer env.Close()
	saved := f.g.m
	defer func() { f.g.m = saved }()
	probe, err := setupProbe(env)
	if err != nil {
		f.t.Logf("replay: %v", err)
		return false
	}
	f.g.m = &model{probe: probe}
	ids := map[string]string{}
	var freed []portKey
	known := map[string][]portKey{}
	for _, s := range hist {
		a, _ := f.send(env, s.Req, ids)
		if s.Assigned != "" && a.Assigned != "" {
			ids[s.Assigned] = a.Assigned
		}
		if a.Status < 300 && strings.HasPrefix(a.Req.Path, "/endpoints") {
			var e api.Endpoint
			if json.Unmarshal(a.body, &e) == nil && e.ID != "" {
				known[e.ID] = endpointPorts(&e)
			}
			if a.Req.Method == "DELETE" {
				for id, ps := range known {
					if strings.Contains(a.Req.Path, id) {
						freed = append(freed, ps...)
						delete(known, id)
					}
				}
			}
		}
		// A poison seen after a restart is looked for after the restart
		// only: checking after each request would make replays slow.
		if !restart && (a.Status < 300 || a.Status >= 500) {
			if p := f.quickCheck(env); p != "" && normalize(p) == sig {
				return true
			}
		}
	}
	if !restart {
		return false
	}
	for _, p := range f.restartAndCheck(env, freed, known) {
		if normalize(p) == sig {
			return true
		}
	}
	return false
}

// record counts a finding that is not a poison (5xx, slow).
func (f *fuzzer) record(kind, sig, detail string, req *request, replay []sent) {
	key := kind + " " + sig
	if fd, ok := f.findings[key]; ok {
		fd.Count++
		return
	}
	f.findings[key] = &finding{Kind: kind, Signature: sig, Detail: detail, Culprit: req, Replay: replay, Seed: f.seed, Count: 1}
	f.order = append(f.order, key)
}

// report prints the counts and each distinct finding, writes each
// finding's reproduction under the output directory, and fails the test
// when anything was found.
func (f *fuzzer) report(took time.Duration) {
	poisons := 0
	for _, fd := range f.findings {
		if fd.Kind == "poison" {
			poisons++
		}
	}
	_ = os.MkdirAll(f.cfg.out, 0o755)
	var b strings.Builder
	fmt.Fprintf(&b, "fuzz-api: seeds %v, requests %d (2xx %d, 4xx %d), 5xx %d, slow %d, restarts %d, hosts %d, replays %d, poisons found %d (%s)\n",
		f.cfg.seeds, f.requests, f.status[2], f.status[4], f.fiveXX, f.slow, f.restarts, f.hosts, f.replays, poisons, took.Round(time.Second))
	for i, key := range f.order {
		fd := f.findings[key]
		fmt.Fprintf(&b, "\n[%d] %s (seen %d times, seed %d): %s\n", i+1, fd.Kind, fd.Count, fd.Seed, collapse(fd.Detail))
		if fd.Culprit != nil {
			note := ""
			switch {
			case fd.Kind != "poison":
			case fd.Alone:
				note = " (reproduces alone, on a new host)"
			case len(fd.Replay) > 1:
				note = fmt.Sprintf(" (after %d earlier requests)", len(fd.Replay)-1)
			}
			fmt.Fprintf(&b, "    cause%s: %s\n", note, oneLine(*fd.Culprit))
		}
		name := filepath.Join(f.cfg.out, fmt.Sprintf("%02d-%s.json", i+1, fd.Kind))
		if data, err := json.MarshalIndent(fd, "", "  "); err == nil {
			_ = os.WriteFile(name, data, 0o644)
			fmt.Fprintf(&b, "    reproduction: %s\n", name)
		}
	}
	fmt.Print(b.String())
	_ = os.WriteFile(filepath.Join(f.cfg.out, "summary.txt"), []byte(b.String()), 0o644)
	if len(f.findings) > 0 {
		f.t.Errorf("fuzz-api found %d poisons and %d other findings (above; reproductions in %s)", poisons, len(f.findings)-poisons, f.cfg.out)
	}
}

// oneLine is a request as a curl command line, its body cut short.
func oneLine(r request) string {
	body := collapse(r.Body)
	if len(body) > 240 {
		body = body[:240] + fmt.Sprintf("...(%d bytes)", len(r.Body))
	}
	s := fmt.Sprintf("curl --unix-socket $SOCK -X %s 'http://x%s'", r.Method, r.Path)
	if r.Body != "" {
		s += " -d " + strconv.Quote(body)
	}
	return s + "   # " + r.Kind
}

var (
	reGUID = regexp.MustCompile(`(?i)[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}`)
	reDev  = regexp.MustCompile(`\bhn[a-z]{1,3}[0-9a-f]{6,}\b`)
	reIPv4 = regexp.MustCompile(`\b\d{1,3}\.\d{1,3}\.\d{1,3}\.\d{1,3}(/\d+)?\b`)
	reNum  = regexp.MustCompile(`\d+`)
	reProt = regexp.MustCompile(`\b(tcp|udp)\b`)
	reName = regexp.MustCompile(`"(net|ep|ns|hcs|hcsep|c|rule-)\d+"`)
	rePath = regexp.MustCompile(`/tmp/\S+`)
	reLong = regexp.MustCompile(`<x\d+>`)
)

// collapse shortens runs of one character (a 40 KiB name) for reports.
func collapse(s string) string {
	var b strings.Builder
	for i := 0; i < len(s); {
		j := i
		for j < len(s) && s[j] == s[i] {
			j++
		}
		if j-i > 16 {
			fmt.Fprintf(&b, "%c<x%d>", s[i], j-i)
		} else {
			b.WriteString(s[i:j])
		}
		i = j
	}
	out := b.String()
	if len(out) > 400 {
		out = out[:400] + "..."
	}
	return out
}

// normalize turns a problem or error into a signature: what varies from
// one occurrence to the next (IDs, device names, addresses, numbers, the
// fuzzer's names, paths) is replaced.
func normalize(s string) string {
	s = collapse(firstLine(s))
	s = reGUID.ReplaceAllString(s, "<id>")
	s = reDev.ReplaceAllString(s, "<dev>")
	s = reIPv4.ReplaceAllString(s, "<ip>")
	s = reName.ReplaceAllString(s, `"<name>"`)
	s = rePath.ReplaceAllString(s, "<path>")
	s = reLong.ReplaceAllString(s, "<long>")
	s = reNum.ReplaceAllString(s, "<n>")
	s = reProt.ReplaceAllString(s, "<proto>")
	if len(s) > 300 {
		s = s[:300]
	}
	return s
}

// pathPattern is a request path with its reference replaced.
func pathPattern(p string) string {
	p, _, _ = strings.Cut(p, "?")
	parts := strings.SplitN(p, "/", 3)
	if len(parts) == 3 {
		return "/" + parts[1] + "/{ref}"
	}
	return p
}

func firstLine(s string) string {
	s, _, _ = strings.Cut(s, "\n")
	return s
}

// logMessage extracts msg and err of a log line.
func logMessage(l string) string {
	out := l
	if i := strings.Index(l, "msg="); i >= 0 {
		out = l[i:]
	}
	return out
}
