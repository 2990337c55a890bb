package cli

import (
	"bytes"
	"encoding/json"
	"reflect"
	"strings"
	"testing"

	"github.com/hostnet/hostnet/api"
	"github.com/spf13/cobra"
)

// parseCreateFlags parses `network create` arguments into its options, the
// way the command does, without running it.
func parseCreateFlags(t *testing.T, args ...string) (*networkCreateOptions, string) {
	t.Helper()
	var o *networkCreateOptions
	var name string
	a := &app{io: IO{Out: &bytes.Buffer{}, Err: &bytes.Buffer{}}}
	cmd := newNetworkCreateCommand(a)
	cmd.RunE = func(cmd *cobra.Command, args []string) error {
		if len(args) > 0 {
			name = args[0]
		}
		return nil
	}
	cmd.SetArgs(args)
	cmd.SetOut(&bytes.Buffer{})
	cmd.SetErr(&bytes.Buffer{})
	o = &networkCreateOptions{}
	if err := cmd.Execute(); err != nil {
		t.Fatalf("parse %v: %v", args, err)
	}
	o.driver, _ = cmd.Flags().GetString("driver")
	o.subnets, _ = cmd.Flags().GetStringArray("subnet")
	o.gateways, _ = cmd.Flags().GetStringArray("gateway")
	o.ipRanges, _ = cmd.Flags().GetStringArray("ip-range")
	o.dns, _ = cmd.Flags().GetStringArray("dns")
	o.dnsSearch, _ = cmd.Flags().GetStringArray("dns-search")
	o.opts, _ = cmd.Flags().GetStringArray("opt")
	return o, name
}

func mustJSON(t *testing.T, v any) string {
	t.Helper()
	b, err := json.Marshal(v)
	if err != nil {
		t.Fatal(err)
	}
	return string(b)
}

func TestBuildNetwork(t *testing.T) {
	for _, tc := range []struct {
		name  string
		args  []string
		want  string // the document, as JSON
		notes string
	}{
		{
			name: "defaults",
			args: []string{"n1"},
			want: `{"Name":"n1","Type":"NAT","Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
		{
			name: "driver case-insensitive, dual stack with gateways and ranges",
			args: []string{"-d", "Transparent", "--subnet", "10.0.0.0/24", "--subnet", "fd00:1::/64",
				"--gateway", "fd00:1::1", "--gateway", "10.0.0.1", "--ip-range", "fd00:1::/80", "n2"},
			want: `{"Name":"n2","Type":"Transparent","Ipams":[{"Type":"Static","Subnets":[` +
				`{"IpAddressPrefix":"10.0.0.0/24","Routes":[{"NextHop":"10.0.0.1","DestinationPrefix":"0.0.0.0/0"}]},` +
				`{"IpAddressPrefix":"fd00:1::/64","Routes":[{"NextHop":"fd00:1::1","DestinationPrefix":"::/0"}],"IpRange":"fd00:1::/80"}]}],` +
				`"Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
		{
			name: "dns flags and options",
			args: []string{"--dns", "1.1.1.1", "--dns-search", "corp.example", "-o", "com.docker.network.windowsshim.dnsservers=8.8.8.8, 8.8.4.4",
				"-o", "com.docker.network.windowsshim.dnssuffix=example.com", "n3"},
			want: `{"Name":"n3","Type":"NAT","Dns":{"Domain":"example.com","Search":["corp.example"],"ServerList":["1.1.1.1","8.8.8.8","8.8.4.4"]},` +
				`"Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
		{
			name: "windowsshim network options",
			args: []string{"-d", "overlay", "--subnet", "10.9.0.0/16", "-o", "com.docker.network.windowsshim.networkname=ov",
				"-o", "com.docker.network.windowsshim.vsid=4096", "-o", "com.docker.network.windowsshim.interface=eth1",
				"-o", "com.docker.network.windowsshim.macpool=00-15-5D-52-C0-00-00-15-5D-52-CF-FF"},
			want: `{"Name":"ov","Type":"Overlay","Policies":[{"Type":"NetAdapterName","Settings":{"NetworkAdapterName":"eth1"}}],` +
				`"MacPool":{"Ranges":[{"StartMacAddress":"00-15-5D-52-C0-00","EndMacAddress":"00-15-5D-52-CF-FF"}]},` +
				`"Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"10.9.0.0/16","Policies":[{"Type":"VSID","Settings":{"IsolationId":4096}}]}]}],` +
				`"Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
		{
			name: "vlan on every subnet, nonpersistent",
			args: []string{"-d", "l2bridge", "--subnet", "10.2.0.0/24", "--subnet", "fd02::/64", "-o", "com.docker.network.windowsshim.vlanid=12",
				"-o", "nonpersistent=1", "n4"},
			want: `{"Name":"n4","Type":"L2Bridge","Ipams":[{"Type":"Static","Subnets":[` +
				`{"IpAddressPrefix":"10.2.0.0/24","Policies":[{"Type":"VLAN","Settings":{"IsolationId":12}}]},` +
				`{"IpAddressPrefix":"fd02::/64","Policies":[{"Type":"VLAN","Settings":{"IsolationId":12}}]}]}],` +
				`"Flags":8,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
		{
			name:  "ignored options leave notes",
			args:  []string{"-o", "com.docker.network.windowsshim.disable_gatewaydns=true", "-o", "com.docker.network.windowsshim.networkname=other", "-o", "nonpersistent=false", "n5"},
			want:  `{"Name":"n5","Type":"NAT","Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
			notes: "note: option com.docker.network.windowsshim.disable_gatewaydns is ignored: hostnet has no gateway DNS proxy\nnote: option com.docker.network.windowsshim.networkname=other is ignored: the network is named n5\n",
		},
		{
			name: "subnet host bits cleared, macpool with colons",
			args: []string{"--subnet", "192.168.7.9/24", "-o", "com.docker.network.windowsshim.macpool=02:00:00:00:00:00-02:00:00:00:00:ff", "n6"},
			want: `{"Name":"n6","Type":"NAT","MacPool":{"Ranges":[{"StartMacAddress":"02-00-00-00-00-00","EndMacAddress":"02-00-00-00-00-FF"}]},` +
				`"Ipams":[{"Type":"Static","Subnets":[{"IpAddressPrefix":"192.168.7.0/24"}]}],"Flags":0,"SchemaVersion":{"Major":2,"Minor":0}}`,
		},
	} {
		t.Run(tc.name, func(t *testing.T) {
			o, name := parseCreateFlags(t, tc.args...)
			var notes bytes.Buffer
			n, err := buildNetwork(o, name, &notes)
			if err != nil {
				t.Fatal(err)
			}
			if got := mustJSON(t, n); got != tc.want {
				t.Errorf("document\n%s\nwant\n%s", got, tc.want)
			}
			if notes.String() != tc.notes {
				t.Errorf("notes %q, want %q", notes.String(), tc.notes)
			}
		})
	}
}

func TestBuildNetworkErrors(t *testing.T) {
	for _, tc := range []struct {
		args []string
		want string
	}{
		{[]string{"-d", "bridge", "n"}, `unknown driver "bridge" (the HNS network types are nat, ics, transparent, l2bridge, l2tunnel, overlay, private, internal)`},
		{[]string{}, "a network name is required (NAME or -o com.docker.network.windowsshim.networkname=NAME)"},
		{[]string{"-o", "com.docker.network.bridge.name=x", "n"}, `unknown option "com.docker.network.bridge.name" (known: `},
		{[]string{"-o", "novalue", "n"}, `invalid option "novalue": want key=value`},
		{[]string{"-o", "com.docker.network.driver.mtu=1450", "n"}, "option com.docker.network.driver.mtu is not supported yet"},
		{[]string{"-o", "nonpersistent=yes", "n"}, `option nonpersistent: "yes" is not true or false`},
		{[]string{"-o", "nonpersistent=1", "-o", "nonpersistent=0", "n"}, `option "nonpersistent" is given more than once`},
		{[]string{"-o", "com.docker.network.windowsshim.vlanid=5", "n"}, "option com.docker.network.windowsshim.vlanid needs a --subnet to apply to"},
		{[]string{"--subnet", "10.0.0.0/24", "-o", "com.docker.network.windowsshim.vlanid=five", "n"}, `option com.docker.network.windowsshim.vlanid: "five" is not a number`},
		{[]string{"--subnet", "10.0.0.0/24", "-o", "com.docker.network.windowsshim.vsid=-1", "n"}, `option com.docker.network.windowsshim.vsid: "-1" is not a number`},
		{[]string{"-o", "com.docker.network.windowsshim.macpool=00-15-5D-52-CF-FF-00-15-5D-52-C0-00", "n"}, `option com.docker.network.windowsshim.macpool: range "00-15-5D-52-CF-FF-00-15-5D-52-C0-00" starts after it ends`},
		{[]string{"-o", "com.docker.network.windowsshim.macpool=00-15-5D", "n"}, `option com.docker.network.windowsshim.macpool: "00-15-5D" is not a START-END range`},
		{[]string{"-o", "com.docker.network.windowsshim.macpool=zz-15-5D-52-C0-00-00-15-5D-52-CF-FF", "n"}, `option com.docker.network.windowsshim.macpool: "zz-15-5D-52-C0-00" is not a MAC address`},
		{[]string{"-o", "com.docker.network.windowsshim.dnsservers=8.8.8.8,dns.google", "n"}, `option com.docker.network.windowsshim.dnsservers: invalid DNS server: "dns.google" is not an IP address`},
		{[]string{"--dns", "300.1.1.1", "n"}, `invalid DNS server: "300.1.1.1" is not an IP address`},
		{[]string{"--subnet", "10.0.0.0/33", "n"}, `invalid --subnet: "10.0.0.0/33" is not a CIDR prefix`},
		{[]string{"--subnet", "10.0.0.0/24", "--subnet", "10.1.0.0/24", "n"}, "more than one IPv4 --subnet (10.0.0.0/24 and 10.1.0.0/24)"},
		{[]string{"--gateway", "10.0.0.1", "n"}, "gateway 10.0.0.1 has no IPv4 --subnet to belong to"},
		{[]string{"--subnet", "10.0.0.0/24", "--gateway", "fd00::1", "n"}, "gateway fd00::1 has no IPv6 --subnet to belong to"},
		{[]string{"--subnet", "10.0.0.0/24", "--gateway", "10.0.1.1", "n"}, "gateway 10.0.1.1 is not in subnet 10.0.0.0/24"},
		{[]string{"--subnet", "10.0.0.0/24", "--gateway", "10.0.0.1", "--gateway", "10.0.0.2", "n"}, "more than one gateway for subnet 10.0.0.0/24 (10.0.0.1 and 10.0.0.2)"},
		{[]string{"--subnet", "10.0.0.0/24", "--gateway", "gw", "n"}, `invalid --gateway: "gw" is not an IP address`},
		{[]string{"--ip-range", "10.0.0.0/25", "n"}, "ip range 10.0.0.0/25 has no IPv4 --subnet to belong to"},
		{[]string{"--subnet", "10.0.0.0/24", "--ip-range", "10.0.0.0/23", "n"}, "ip range 10.0.0.0/23 is not inside subnet 10.0.0.0/24"},
		{[]string{"--subnet", "10.0.0.0/24", "--ip-range", "10.0.9.0/25", "n"}, "ip range 10.0.9.0/25 is not inside subnet 10.0.0.0/24"},
		{[]string{"-o", "com.docker.network.windowsshim.interface=", "n"}, "option com.docker.network.windowsshim.interface: the interface name is empty"},
	} {
		o, name := parseCreateFlags(t, tc.args...)
		_, err := buildNetwork(o, name, &bytes.Buffer{})
		if err == nil || !strings.HasPrefix(err.Error(), tc.want) {
			t.Errorf("%v: error %v, want %q", tc.args, err, tc.want)
		}
	}
}

func TestBuildNetworkFilter(t *testing.T) {
	f, err := buildNetworkFilter([]string{"name=nat", "ID=abc", "driver=TRANSPARENT"})
	if err != nil {
		t.Fatal(err)
	}
	if want := map[string]string{"Name": "nat", "ID": "abc", "Type": "Transparent"}; !reflect.DeepEqual(f, want) {
		t.Errorf("filter %v, want %v", f, want)
	}
	if f, err := buildNetworkFilter(nil); err != nil || f != nil {
		t.Errorf("no filter: %v, %v", f, err)
	}
	for _, bad := range [][]string{{"label=x"}, {"name"}, {"name=a", "name=b"}} {
		if _, err := buildNetworkFilter(bad); err == nil {
			t.Errorf("%v accepted", bad)
		}
	}
}

func TestParseMacPoolSeveralRanges(t *testing.T) {
	p, err := parseMacPool("00-15-5D-00-00-00-00-15-5D-00-00-0F, 00-15-5d-00-01-00-00-15-5d-00-01-0f")
	if err != nil {
		t.Fatal(err)
	}
	want := []api.MacRange{{StartMacAddress: "00-15-5D-00-00-00", EndMacAddress: "00-15-5D-00-00-0F"}, {StartMacAddress: "00-15-5D-00-01-00", EndMacAddress: "00-15-5D-00-01-0F"}}
	if !reflect.DeepEqual(p.Ranges, want) {
		t.Errorf("ranges %v", p.Ranges)
	}
}

func TestBuildEndpoint(t *testing.T) {
	e, err := buildEndpoint(&endpointOptions{network: "nat", ips: []string{"10.0.0.5", "fd00::5/64"}, mac: "02:00:00:aa:bb:cc",
		dns: []string{"10.0.0.1"}, ifname: "eth1", name: "web"})
	if err != nil {
		t.Fatal(err)
	}
	want := `{"Name":"web","HostComputeNetwork":"nat","IpConfigurations":[{"IpAddress":"10.0.0.5"},{"IpAddress":"fd00::5","PrefixLength":64}],` +
		`"Dns":{"ServerList":["10.0.0.1"]},"MacAddress":"02-00-00-AA-BB-CC","Flags":0,"SchemaVersion":{"Major":2,"Minor":0},"InterfaceName":"eth1"}`
	if got := mustJSON(t, e); got != want {
		t.Errorf("document\n%s\nwant\n%s", got, want)
	}
	for _, o := range []endpointOptions{
		{},
		{network: "n", ips: []string{"10.0.0.300"}},
		{network: "n", ips: []string{"10.0.0.3/40"}},
		{network: "n", mac: "02:00"},
		{network: "n", dns: []string{"x"}},
		{network: "n", ifname: "much-too-long-name"},
	} {
		if _, err := buildEndpoint(&o); err == nil {
			t.Errorf("%+v accepted", o)
		}
	}
}
