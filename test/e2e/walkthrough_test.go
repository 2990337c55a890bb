package e2e

import (
	"bufio"
	"bytes"
	"context"
	"encoding/json"
	"errors"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"regexp"
	"slices"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/hostnet/hostnet/api"
)

// The README's "Five-minute walkthrough", command for command, in a lab: a
// daemon in a throwaway host namespace with a fake outside. Each command is
// run as the README writes it (sudo and bin/ mapped onto the lab's binary
// and socket, example.org onto a web server in the outside), its output
// compared with the README's where the README shows one, and what the text
// around it claims is checked. A command of the README that the test does
// not know fails it, and so does a command the test knows that the README
// no longer has: the README cannot drift from the code.
func TestReadmeWalkthrough(t *testing.T) {
	b, err := os.ReadFile("../../README.md")
	if err != nil {
		t.Fatal(err)
	}
	cmds, err := parseWalkthrough(string(b))
	if err != nil {
		t.Fatal(err)
	}
	steps := walkthroughSteps()
	var seen []string
	for _, c := range cmds {
		if _, ok := steps[c.text]; !ok {
			t.Errorf("README.md:%d: the walkthrough has a command the test does not run: %q (add it to walkthroughSteps)", c.line, c.text)
		}
		seen = append(seen, c.text)
	}
	for text := range steps {
		if !slices.Contains(seen, text) {
			t.Errorf("the test runs %q, which the README's walkthrough no longer has", text)
		}
	}
	if t.Failed() {
		return
	}
	if len(cmds) == 0 || cmds[0].text != "sudo make run" {
		t.Fatalf("the walkthrough does not start with sudo make run: %+v", cmds)
	}

	lab := &walkLab{t: t}
	defer lab.stop()
	for _, c := range cmds {
		t.Logf("README.md:%d: %s", c.line, c.text)
		out, compare := steps[c.text](lab, c)
		if compare && len(c.output) > 0 {
			if err := compareOutput(c.output, out); err != nil {
				t.Errorf("README.md:%d: %s: %v\nthe README shows:\n%s\nthe command printed:\n%s", c.line, c.text, err, strings.Join(c.output, "\n"), out)
			}
		}
		if t.Failed() {
			return
		}
	}
}

// readmeCommand is a command of the walkthrough and the output the README
// shows under it.
type readmeCommand struct {
	line   int
	text   string   // as written, without the prompt
	words  []string // split as the shell does, without a trailing & or comment
	bg     bool     // ends with &
	output []string
}

// parseWalkthrough reads the commands of the README's walkthrough section:
// indented lines after a "$ " prompt (what follows them, up to the next
// prompt, is their output), and indented lines of blocks without prompts.
func parseWalkthrough(readme string) ([]readmeCommand, error) {
	lines := strings.Split(readme, "\n")
	start := slices.Index(lines, "## Five-minute walkthrough")
	if start < 0 {
		return nil, errors.New("README.md has no \"## Five-minute walkthrough\" section")
	}
	end := len(lines)
	for i := start + 1; i < len(lines); i++ {
		if strings.HasPrefix(lines[i], "## ") {
			end = i
			break
		}
	}
	indented := func(l string) bool { return strings.HasPrefix(l, "    ") }
	var (
		cmds    []readmeCommand
		current *readmeCommand
		inBlock bool
	)
	finish := func() {
		if current != nil {
			for len(current.output) > 0 && current.output[len(current.output)-1] == "" {
				current.output = current.output[:len(current.output)-1]
			}
			cmds = append(cmds, *current)
			current = nil
		}
	}
	for i := start + 1; i < end; i++ {
		l := lines[i]
		switch {
		case indented(l):
			text := strings.TrimPrefix(l, "    ")
			switch {
			case strings.HasPrefix(text, "$ "):
				finish()
				current = &readmeCommand{line: i + 1, text: strings.TrimSpace(strings.TrimPrefix(text, "$ "))}
			case current != nil:
				current.output = append(current.output, strings.TrimRight(text, " "))
			default:
				cmds = append(cmds, readmeCommand{line: i + 1, text: strings.TrimSpace(text)})
			}
			inBlock = true
		case strings.TrimSpace(l) == "" && inBlock:
			// A blank line goes on the block when an indented one follows.
			j := i + 1
			for j < end && strings.TrimSpace(lines[j]) == "" {
				j++
			}
			if j < end && indented(lines[j]) {
				if current != nil {
					current.output = append(current.output, "")
				}
				continue
			}
			finish()
			inBlock = false
		default:
			finish()
			inBlock = false
		}
	}
	finish()
	for i := range cmds {
		words, bg, err := shellWords(cmds[i].text)
		if err != nil {
			return nil, fmt.Errorf("README.md:%d: %v", cmds[i].line, err)
		}
		// The key of a command is its text without the comment.
		cmds[i].words, cmds[i].bg = words, bg
		if k := strings.Index(cmds[i].text, "  #"); k >= 0 {
			cmds[i].text = strings.TrimSpace(cmds[i].text[:k])
		}
	}
	return cmds, nil
}

// shellWords splits a command line as sh does for the quoting the README
// uses: single and double quotes, backslashes, a comment, a trailing &.
func shellWords(s string) (words []string, background bool, err error) {
	var (
		cur     strings.Builder
		inWord  bool
		quote   rune
		escaped bool
	)
	flush := func() {
		if inWord {
			words = append(words, cur.String())
			cur.Reset()
			inWord = false
		}
	}
	for _, r := range s {
		switch {
		case escaped:
			cur.WriteRune(r)
			escaped = false
		case quote != 0:
			if r == quote {
				quote = 0
			} else {
				cur.WriteRune(r)
			}
		case r == '\\':
			escaped, inWord = true, true
		case r == '\'' || r == '"':
			quote, inWord = r, true
		case r == ' ' || r == '\t':
			flush()
		case r == '#' && !inWord:
			flush()
			return finishWords(words)
		default:
			cur.WriteRune(r)
			inWord = true
		}
	}
	if quote != 0 {
		return nil, false, fmt.Errorf("unclosed quote in %q", s)
	}
	flush()
	return finishWords(words)
}

func finishWords(words []string) ([]string, bool, error) {
	if n := len(words); n > 0 && words[n-1] == "&" {
		return words[:n-1], true, nil
	}
	return words, false, nil
}

// What differs from run to run: IDs, bridge names, the network's byte of a MAC.
var (
	varUUID    = regexp.MustCompile(`[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}`)
	varShortID = regexp.MustCompile(`\b[0-9a-f]{8}-[0-9a-f]{3}\b`)
	varBridge  = regexp.MustCompile(`\bhnbr[0-9a-f]{10}\b`)
	varMAC     = regexp.MustCompile(`\b02-[0-9A-F]{2}-`)
	spaces     = regexp.MustCompile(`\s+`)
)

// normalizeLine makes a line of output comparable across runs and column
// widths.
func normalizeLine(l string) string {
	l = varUUID.ReplaceAllString(l, "<uuid>")
	l = varShortID.ReplaceAllString(l, "<id>")
	l = varBridge.ReplaceAllString(l, "<bridge>")
	l = varMAC.ReplaceAllString(l, "02-<net>-")
	return strings.TrimSpace(spaces.ReplaceAllString(l, " "))
}

// compareOutput compares what a command printed with what the README shows,
// line by line; a README line "..." stands for the rest.
func compareOutput(want []string, got string) error {
	lines := strings.Split(strings.TrimRight(got, "\n"), "\n")
	for i, w := range want {
		if strings.TrimSpace(w) == "..." {
			return nil
		}
		if i >= len(lines) {
			return fmt.Errorf("line %d: the README shows %q, the command printed no more", i+1, w)
		}
		if nw, ng := normalizeLine(w), normalizeLine(lines[i]); nw != ng {
			return fmt.Errorf("line %d: the README shows %q, the command printed %q", i+1, w, lines[i])
		}
	}
	if len(lines) > len(want) {
		return fmt.Errorf("the command printed %d lines more than the README shows", len(lines)-len(want))
	}
	return nil
}

// walkLab is the walkthrough's host: a daemon in a throwaway namespace,
// and the commands started in the background.
type walkLab struct {
	t     *testing.T
	e     *Env
	mu    sync.Mutex
	bg    []*exec.Cmd
	outMu sync.Mutex
	bgOut bytes.Buffer // what the background commands printed
}

// syncWriter is a writer for several processes.
type syncWriter struct {
	mu *sync.Mutex
	w  io.Writer
}

func (s syncWriter) Write(p []byte) (int, error) {
	s.mu.Lock()
	defer s.mu.Unlock()
	return s.w.Write(p)
}

// command builds the process of a README command: sudo dropped, bin/hostnet
// the lab's CLI on the lab's socket, run from the repository's root as the
// README's commands are.
func (l *walkLab) command(words []string) *exec.Cmd {
	l.t.Helper()
	words = slices.Clone(words)
	if len(words) > 0 && words[0] == "sudo" {
		words = words[1:]
	}
	if len(words) == 0 {
		l.t.Fatal("an empty command")
	}
	var cmd *exec.Cmd
	if words[0] == "bin/hostnet" {
		cmd = exec.Command(hostnetBin, append([]string{"--socket", l.e.Socket}, words[1:]...)...)
	} else {
		cmd = exec.Command(words[0], words[1:]...)
	}
	cmd.Dir = "../.."
	cmd.Env = cleanEnv()
	return cmd
}

// run runs a README command in the lab and returns its stdout; it fails
// the test unless the command exits 0.
func (l *walkLab) run(words []string, env ...string) string {
	l.t.Helper()
	cmd := l.command(words)
	cmd.Env = append(cmd.Env, env...)
	var out, errb bytes.Buffer
	cmd.Stdout, cmd.Stderr = &out, &errb
	if err := cmd.Run(); err != nil {
		l.t.Fatalf("%s: %v\nstdout: %s\nstderr: %s", strings.Join(words, " "), err, out.String(), errb.String())
	}
	return out.String()
}

// start starts a README command that ends with &.
func (l *walkLab) start(words []string, env ...string) {
	l.t.Helper()
	cmd := l.command(words)
	cmd.Env = append(cmd.Env, env...)
	w := syncWriter{mu: &l.outMu, w: &l.bgOut}
	cmd.Stdout, cmd.Stderr = w, w
	if err := cmd.Start(); err != nil {
		l.t.Fatalf("%s: %v", strings.Join(words, " "), err)
	}
	l.mu.Lock()
	l.bg = append(l.bg, cmd)
	l.mu.Unlock()
}

// stop ends the background commands (hostnet run passes SIGTERM on).
func (l *walkLab) stop() {
	l.mu.Lock()
	defer l.mu.Unlock()
	defer func() {
		if l.t.Failed() {
			l.outMu.Lock()
			l.t.Logf("the background commands printed:\n%s", l.bgOut.String())
			l.outMu.Unlock()
		}
	}()
	for _, c := range l.bg {
		_ = c.Process.Signal(syscall.SIGTERM)
		done := make(chan struct{})
		go func() { _ = c.Wait(); close(done) }()
		select {
		case <-done:
		case <-time.After(10 * time.Second):
			_ = c.Process.Kill()
			<-done
		}
	}
	l.bg = nil
}

// replaceWords returns words with each old word replaced.
func replaceWords(words []string, old, new string) []string {
	out := slices.Clone(words)
	for i, w := range out {
		if w == old {
			out[i] = new
		}
	}
	return out
}

// withFallback replaces the program after "--" with the test binary acting
// as it (a helper mode) when that program is not installed.
func withFallback(t *testing.T, words []string, program, mode string, args ...string) ([]string, []string) {
	i := slices.Index(words, "--")
	if i < 0 || i+1 >= len(words) || words[i+1] != program {
		t.Fatalf("%q does not run %s", strings.Join(words, " "), program)
	}
	if _, err := exec.LookPath(program); err == nil {
		return words, nil
	}
	self, err := os.Executable()
	if err != nil {
		t.Fatal(err)
	}
	t.Logf("%s is not installed: the test binary stands in for it", program)
	return append(slices.Clone(words[:i+1]), append([]string{self}, args...)...), []string{helperEnv + "=" + mode}
}

// httpStatus asks for / at addr (host:port) from inside the namespace at
// ns (httpGet), and returns the status code (0 when nothing answered).
func httpStatus(t *testing.T, ns, addr string) int {
	t.Helper()
	raw, err := httpGet(t, ns, addr)
	if err != nil {
		return 0
	}
	resp, err := http.ReadResponse(bufio.NewReader(strings.NewReader(raw)), nil)
	if err != nil {
		return 0
	}
	resp.Body.Close()
	return resp.StatusCode
}

// walkthroughSteps maps each command of the walkthrough onto how the lab
// runs it and what it checks; the bool says whether the README's output is
// compared with the command's.
func walkthroughSteps() map[string]func(*walkLab, readmeCommand) (string, bool) {
	generic := func(l *walkLab, c readmeCommand) (string, bool) { return l.run(c.words), true }
	return map[string]func(*walkLab, readmeCommand) (string, bool){
		"sudo make run": func(l *walkLab, c readmeCommand) (string, bool) {
			l.e = NewEnv(l.t)
			return "", false
		},
		"sudo bin/hostnet network ls": generic,
		"sudo bin/hostnet run --rm -- curl -sI https://example.org": func(l *walkLab, c readmeCommand) (string, bool) {
			// The outside has a web server instead of example.org.
			var srv *http.Server
			In(l.t, l.e.ExtNS, func() error {
				ln, err := net.Listen("tcp", extAddr+":80")
				if err != nil {
					return err
				}
				srv = &http.Server{Handler: http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) { fmt.Fprintln(w, "hello") })}
				go func() { _ = srv.Serve(ln) }()
				return nil
			})
			l.t.Cleanup(func() { srv.Close() })
			url := "http://" + extAddr + "/"
			words, env := withFallback(l.t, replaceWords(c.words, "https://example.org", url), "curl", "httpget", url)
			out := l.run(words, env...)
			if first, _, _ := strings.Cut(out, "\n"); !strings.HasPrefix(first, "HTTP/") || !strings.Contains(first, " 200") {
				l.t.Errorf("hostnet run curl: the outside answered %q, want HTTP 200", out)
			}
			if eps, _ := l.e.Client().ListEndpoints(ctx, nil); len(eps) != 0 {
				l.t.Errorf("run --rm left endpoints: %v", eps)
			}
			return out, false
		},
		"sudo bin/hostnet network create --subnet 10.77.0.0/24 blue": generic,
		"sudo bin/hostnet run --network blue --name web -- sleep 600 &": func(l *walkLab, c readmeCommand) (string, bool) {
			l.start(c.words)
			l.waitAttached("web")
			return "", false
		},
		"sudo bin/hostnet endpoint ls": generic,
		"sudo bin/hostnet endpoint inspect web": func(l *walkLab, c readmeCommand) (string, bool) {
			out := l.run(c.words)
			var docs []api.Endpoint
			if err := json.Unmarshal([]byte(out), &docs); err != nil || len(docs) != 1 || docs[0].Name != "web" {
				l.t.Errorf("endpoint inspect web: %v\n%s", err, out)
			}
			return out, true
		},
		"sudo bin/hostnet run -p 8080:80 --name site -- python3 -m http.server 80 &": func(l *walkLab, c readmeCommand) (string, bool) {
			words, env := withFallback(l.t, c.words, "python3", "httpserve", "80")
			l.start(words, env...)
			l.waitAttached("site")
			for deadline := time.Now().Add(20 * time.Second); httpStatus(l.t, l.e.ExtNS, hostAddr+":8080") != http.StatusOK; {
				if time.Now().After(deadline) {
					l.t.Fatalf("the published port 8080 does not answer from outside")
				}
				time.Sleep(100 * time.Millisecond)
			}
			return "", false
		},
		"sudo bin/hostnet endpoint policy add site --acl 'allow in proto tcp lport 80 remote 192.0.2.0/24 priority 100'": func(l *walkLab, c readmeCommand) (string, bool) {
			out := l.run(c.words)
			// The outside (198.51.100.1) is not in 192.0.2.0/24: with its first
			// rule the endpoint denies it.
			if code := httpStatus(l.t, l.e.ExtNS, hostAddr+":8080"); code != 0 {
				l.t.Errorf("the outside still reaches the published port behind the ACL (HTTP %d)", code)
			}
			return out, true
		},
		"sudo bin/hostnet endpoint policy ls site": generic,
		"sudo bin/hostnet apply -f examples/network.json": func(l *walkLab, c readmeCommand) (string, bool) {
			out := l.run(c.words)
			if _, err := l.e.Client().GetNetwork(ctx, "example"); err != nil {
				l.t.Errorf("after apply -f examples/network.json: %v", err)
			}
			return out, true
		},
		"sudo curl -s --unix-socket /run/hostnet/hostnet.sock http://x/networks/blue": func(l *walkLab, c readmeCommand) (string, bool) {
			words := replaceWords(c.words, "/run/hostnet/hostnet.sock", l.e.Socket)
			var out string
			if _, err := exec.LookPath("curl"); err == nil {
				out = l.run(words)
			} else {
				l.t.Log("curl is not installed: the test asks over the socket itself")
				hc := &http.Client{Transport: &http.Transport{DialContext: func(ctx context.Context, _, _ string) (net.Conn, error) {
					var d net.Dialer
					return d.DialContext(ctx, "unix", l.e.Socket)
				}}}
				resp, err := hc.Get(words[len(words)-1])
				if err != nil {
					l.t.Fatal(err)
				}
				b, _ := io.ReadAll(resp.Body)
				resp.Body.Close()
				out = string(b)
			}
			var n api.Network
			if err := json.Unmarshal([]byte(out), &n); err != nil || n.Name != "blue" {
				l.t.Errorf("GET /networks/blue: %v\n%s", err, out)
			}
			return out, true
		},
	}
}

// waitAttached waits until the endpoint name exists and is attached.
func (l *walkLab) waitAttached(name string) {
	l.t.Helper()
	for deadline := time.Now().Add(20 * time.Second); ; {
		if ep, err := l.e.Client().GetEndpoint(ctx, name); err == nil && ep.HostComputeNamespace != "" {
			return
		}
		if time.Now().After(deadline) {
			l.t.Fatalf("endpoint %s is not attached 20 s after its hostnet run started", name)
		}
		time.Sleep(50 * time.Millisecond)
	}
}

func TestShellWords(t *testing.T) {
	for _, c := range []struct {
		in   string
		want []string
		bg   bool
	}{
		{`sudo bin/hostnet endpoint policy add site --acl 'allow in proto tcp lport 80 priority 100'`, []string{"sudo", "bin/hostnet", "endpoint", "policy", "add", "site", "--acl", "allow in proto tcp lport 80 priority 100"}, false},
		{`sudo bin/hostnet run --name web -- sleep 600 &`, []string{"sudo", "bin/hostnet", "run", "--name", "web", "--", "sleep", "600"}, true},
		{`sudo bin/hostnet endpoint policy ls site        # mappings, then rules`, []string{"sudo", "bin/hostnet", "endpoint", "policy", "ls", "site"}, false},
		{`echo "a b" c\ d x#y`, []string{"echo", "a b", "c d", "x#y"}, false},
	} {
		got, bg, err := shellWords(c.in)
		if err != nil || !slices.Equal(got, c.want) || bg != c.bg {
			t.Errorf("shellWords(%q) = %q, %v, %v", c.in, got, bg, err)
		}
	}
	if _, _, err := shellWords(`echo 'open`); err == nil {
		t.Error("an unclosed quote is no error")
	}
}
