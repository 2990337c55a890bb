package policy

import (
	"net"
	"net/netip"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/hostnet/hostnet/internal/netmodel"
	"github.com/hostnet/hostnet/internal/testutil"
)

// webOnly is the profile of the device tests: everything out; in, TCP to
// port 80 only.
func webOnly(t testing.TB) []api.ACLSpec {
	return []api.ACLSpec{
		mustACL(t, "Allow", "Out", "", "", "", "", "", 100),
		mustACL(t, "Allow", "In", "6", "", "80", "", "", 100),
		mustACL(t, "Block", "In", "", "", "", "", "", 1000),
	}
}

// compose builds the tables that objs make, failing the test on an error
// or an invalid table, and renders them.
func compose(t *testing.T, objs []netmodel.Object) string {
	t.Helper()
	tables, err := netmodel.ComposeTables(objs)
	if err != nil {
		t.Fatal(err)
	}
	var b strings.Builder
	for _, tbl := range tables {
		if err := tbl.Validate(); err != nil {
			t.Fatalf("table %s: %v", tbl.Key(), err)
		}
		b.WriteString(tbl.String())
	}
	return b.String()
}

// dedup keeps the first object of each key, as the reconciler shares
// objects wanted alike.
func dedup(t *testing.T, objs []netmodel.Object) []netmodel.Object {
	t.Helper()
	seen := map[netmodel.Key]netmodel.Object{}
	var out []netmodel.Object
	for _, o := range objs {
		if prev, ok := seen[o.Key()]; ok {
			if prev.String() != o.String() {
				t.Fatalf("%s wanted two ways: %s and %s", o.Key(), prev, o)
			}
			continue
		}
		seen[o.Key()] = o
		out = append(out, o)
	}
	return out
}

// Two networks on uplink up0 (one endpoint with web-only rules, in bridge
// mode, one with the defaults, one quarantined, and the host's shim) and
// one on up1 (an endpoint with the same web-only rules): one netdev table,
// one layout per device, profile chains shared across devices.
func TestDeviceHooksGolden(t *testing.T) {
	up0, up1 := DeviceHooks{Table: TableName, Device: "up0"}, DeviceHooks{Table: TableName, Device: "up1"}
	a := []netip.Addr{netip.MustParseAddr("10.0.0.2"), netip.MustParseAddr("fd00::2")}
	b := []netip.Addr{netip.MustParseAddr("10.0.1.2")}
	c := []netip.Addr{netip.MustParseAddr("10.0.0.3")}
	d := []netip.Addr{netip.MustParseAddr("192.168.5.2")}
	var objs []netmodel.Object
	objs = append(objs, up0.Layout()...)
	objs = append(objs, up0.Filter(a, nil, webOnly(t), false)...)
	objs = append(objs, up0.Layout()...) // the second network of up0
	objs = append(objs, up0.Filter(b, nil, nil, false)...)
	objs = append(objs, up0.Filter(c, nil, webOnly(t), true)...)
	objs = append(objs, up0.Bridged(net.HardwareAddr{2, 0, 0, 0, 0, 2})...) // a's macvlan, in bridge mode
	objs = append(objs, up0.Shim(net.HardwareAddr{2, 0, 0, 0, 0, 0xfe})...)
	objs = append(objs, up1.Layout()...)
	objs = append(objs, up1.Filter(d, webOnly(t), nil, false)...)
	testutil.Golden(t, "device.nft", compose(t, dedup(t, objs)))
}

// The objects of two devices never share a key (but the profile chains,
// which are the same objects); a Layout is the same each time.
func TestDeviceHooksNames(t *testing.T) {
	keys := func(objs []netmodel.Object) map[netmodel.Key]string {
		out := map[netmodel.Key]string{}
		for _, o := range objs {
			out[o.Key()] = o.String()
		}
		return out
	}
	l0, l1 := keys(DeviceHooks{Table: "t", Device: "up0"}.Layout()), keys(DeviceHooks{Table: "t", Device: "up1"}.Layout())
	for k := range l0 {
		if _, clash := l1[k]; clash {
			t.Errorf("up0 and up1 both want %s", k)
		}
	}
	first, again := DeviceHooks{Table: "t", Device: "up0"}.Layout(), DeviceHooks{Table: "t", Device: "up0"}.Layout()
	if compose(t, first) != compose(t, again) {
		t.Error("Layout differs between calls")
	}
	for _, o := range again {
		if l0[o.Key()] != o.String() {
			t.Errorf("Layout differs between calls: %s", o)
		}
	}
	for dev, want := range map[string]string{
		"eth0":          "ingress_eth0",
		"en-p1.s0_x":    "ingress_en-p1.s0_x",
		"up@link":       "ingress_x",
		"wlan:1":        "ingress_x",
		"":              "ingress_x",
		"verylongname0": "ingress_verylongname0",
	} {
		got := DeviceHooks{Device: dev}.Name(ChainIngress)
		if !strings.HasPrefix(got, want) || (want == "ingress_x" && len(got) != len("ingress_x")+12) {
			t.Errorf("Name(%q) = %q, want %q...", dev, got, want)
		}
	}
	// Odd device names still make a valid table (the chain keeps the real
	// device).
	compose(t, DeviceHooks{Table: "t", Device: "up@link"}.Layout())
}

// A quarantined endpoint fails closed: its addresses jump both ways to
// the chains that deny everything.
func TestDeviceHooksQuarantine(t *testing.T) {
	d := DeviceHooks{Table: "t", Device: "up0"}
	var got []string
	for _, o := range d.Filter([]netip.Addr{netip.MustParseAddr("10.0.0.2")}, nil, webOnly(t), true) {
		got = append(got, o.String())
	}
	want := []string{
		"nft chain netdev t acl_deny_in (2 rules)",
		"nft chain netdev t acl_deny_out (2 rules)",
		"nft element netdev t acl_in_v4_up0 { 10.0.0.2 : jump acl_deny_in }",
		"nft element netdev t acl_out_v4_up0 { 10.0.0.2 : jump acl_deny_out }",
		"nft element netdev t endpoints_v4_up0 { 10.0.0.2 }",
	}
	if strings.Join(got, "\n") != strings.Join(want, "\n") {
		t.Errorf("quarantine:\n%s\nwant:\n%s", strings.Join(got, "\n"), strings.Join(want, "\n"))
	}
}
