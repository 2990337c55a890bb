package policy

import (
	"flag"
	"fmt"
	"net/netip"
	"os"
	"path/filepath"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/dataplane/nft"
)

var update = flag.Bool("update", false, "rewrite the golden files")

func golden(t *testing.T, name, got string) {
	t.Helper()
	path := filepath.Join("testdata", name)
	if *update {
		if err := os.WriteFile(path, []byte(got), 0o644); err != nil {
			t.Fatal(err)
		}
	}
	want, err := os.ReadFile(path)
	if err != nil {
		t.Fatalf("%v (run with -update to create it)", err)
	}
	if got != string(want) {
		t.Errorf("%s differs (run with -update to accept):\n--- got\n%s\n--- want\n%s", name, got, want)
	}
}

func nets() []Network {
	return []Network{
		{ID: "b", Type: api.NAT, Bridge: "hnbr2", Subnets: []netip.Prefix{netip.MustParsePrefix("10.2.0.0/24"), netip.MustParsePrefix("fd00:2::/64")}},
		{ID: "a", Type: api.NAT, Bridge: "hnbr1", Subnets: []netip.Prefix{netip.MustParsePrefix("172.16.0.0/20")}},
	}
}

func TestCompileGolden(t *testing.T) {
	table := Compile(nets())
	if err := table.Validate(); err != nil {
		t.Fatal(err)
	}
	golden(t, "two-nat-networks.nft", table.String())
	golden(t, "no-networks.nft", Compile(nil).String())
}

// The compiler's output does not depend on the order of its input, and
// applying it twice changes nothing the second time.
func TestCompileIsDeterministicAndIdempotent(t *testing.T) {
	n := nets()
	rev := []Network{n[1], n[0]}
	if a, b := Compile(n).String(), Compile(rev).String(); a != b {
		t.Errorf("output depends on input order:\n%s\n---\n%s", a, b)
	}
	f := nft.NewFake()
	for i := 0; i < 2; i++ {
		if err := f.Apply(Compile(n)); err != nil {
			t.Fatal(err)
		}
	}
	if f.Changes() != 1 {
		t.Errorf("applying the same table twice made %d changes, want 1", f.Changes())
	}
}

// Adding networks adds set elements only: the chains and rules stay the same.
func TestRulesDoNotGrowWithNetworks(t *testing.T) {
	count := func(tb *nft.Table) int {
		n := 0
		for _, c := range tb.Chains {
			n += len(c.Rules)
		}
		return n
	}
	one := Compile(nets()[:1])
	var many []Network
	for i := 0; i < 500; i++ {
		many = append(many, Network{ID: fmt.Sprint(i), Type: api.NAT, Bridge: fmt.Sprintf("hnbr%d", i),
			Subnets: []netip.Prefix{netip.PrefixFrom(netip.AddrFrom4([4]byte{10, byte(i >> 8), byte(i), 0}), 24)}})
	}
	if a, b := count(one), count(Compile(many)); a != b {
		t.Errorf("rules: %d with one network, %d with 500", a, b)
	}
}
