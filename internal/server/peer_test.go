package server

import (
	"os"
	"slices"
	"testing"
)

func TestAdmission(t *testing.T) {
	const self = 1000
	groups := func(gs ...int) func() []int { return func() []int { return gs } }
	cases := []struct {
		name     string
		uid, gid int
		admitted []int
		supp     func() []int
		want     bool
	}{
		{"root", 0, 0, nil, nil, true},
		{"root with any gid", 0, 4242, nil, nil, true},
		{"daemon's own uid", self, 1000, nil, nil, true},
		{"other, no group admitted", 65534, 65534, nil, groups(0, 4242), false},
		{"gid 0 is not root", 65534, 0, nil, groups(0), false},
		{"other, not a member", 65534, 65534, []int{4242}, groups(100, 200), false},
		{"primary group", 65534, 4242, []int{4242}, nil, true},
		{"supplementary group", 65534, 65534, []int{4242}, groups(100, 4242), true},
		{"one of several admitted", 65534, 65534, []int{7, 4242}, groups(7), true},
		{"no supplementary groups known", 65534, 65534, []int{4242}, nil, false},
	}
	for _, c := range cases {
		t.Run(c.name, func(t *testing.T) {
			if got := admit(c.uid, c.gid, self, c.admitted, c.supp); got != c.want {
				t.Errorf("admit(uid %d, gid %d, groups %v) = %v, want %v", c.uid, c.gid, c.admitted, got, c.want)
			}
		})
	}
}

func TestAdmissionReadsGroupsOnlyWhenTheyDecide(t *testing.T) {
	calls := 0
	supp := func() []int { calls++; return []int{4242} }
	admit(0, 0, 1000, []int{4242}, supp)
	admit(1000, 1000, 1000, []int{4242}, supp)
	admit(65534, 4242, 1000, []int{4242}, supp)
	admit(65534, 65534, 1000, nil, supp)
	if calls != 0 {
		t.Errorf("supplementary groups read %d times when they did not decide", calls)
	}
	if !admit(65534, 65534, 1000, []int{4242}, supp) || calls != 1 {
		t.Errorf("supplementary groups not read when they decide (calls %d)", calls)
	}
}

func TestParseStatusGroups(t *testing.T) {
	status := "Name:\tcat\nUmask:\t0022\nGid:\t100\t100\t100\t100\nGroups:\t4 24 27 4242 \nNStgid:\t1\n"
	got, err := parseStatusGroups(status)
	if err != nil || !slices.Equal(got, []int{4, 24, 27, 4242}) {
		t.Errorf("got %v, %v", got, err)
	}
	got, err = parseStatusGroups("Name:\tx\nGroups:\t\nPid:\t1\n")
	if err != nil || len(got) != 0 {
		t.Errorf("empty Groups: got %v, %v", got, err)
	}
	if _, err := parseStatusGroups("Name:\tx\n"); err == nil {
		t.Error("no Groups line: no error")
	}
	if _, err := parseStatusGroups("Groups:\t1 x\n"); err == nil {
		t.Error("bad Groups line: no error")
	}
	// This process's own.
	if _, err := procGroups(os.Getpid()); err != nil {
		t.Errorf("own groups: %v", err)
	}
}

func TestResolveGroup(t *testing.T) {
	for in, want := range map[string]int{"0": 0, "4242": 4242} {
		if got, err := ResolveGroup(in); err != nil || got != want {
			t.Errorf("ResolveGroup(%q) = %d, %v; want %d", in, got, err, want)
		}
	}
	if got, err := ResolveGroup("root"); err == nil && got != 0 {
		t.Errorf("ResolveGroup(root) = %d", got)
	}
	for _, bad := range []string{"", "-1", "no-such-group-hostnet"} {
		if _, err := ResolveGroup(bad); err == nil {
			t.Errorf("ResolveGroup(%q): no error", bad)
		}
	}
}
