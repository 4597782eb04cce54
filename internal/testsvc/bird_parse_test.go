package testsvc

import (
	"bufio"
	"net/netip"
	"reflect"
	"strings"
	"testing"
)

// birdShowRouteAll is BIRD 2.0.12's reply to `show route all table master4`
// on the control socket, captured from a run with two neighbors sending the
// same prefix and one sending an IPv4 prefix with an IPv6 next hop.
const birdShowRouteAll = "0001 BIRD 2.0.12 ready.\n" +
	"1007-Table master4:\n" +
	"1007-192.0.2.10/32        unreachable [n_127_0_0_3 2026-11-22 02:50:02 from 127.0.0.3] * (100) [AS65001i]\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.origin: IGP\n" +
	" \tBGP.as_path: 65001 65001 {65010 65011}\n" +
	" \tBGP.next_hop: 127.0.0.3\n" +
	" \tBGP.med: 50\n" +
	" \tBGP.local_pref: 100\n" +
	" \tBGP.community: (65535,0) (65000,100)\n" +
	" \tBGP.large_community: (65000, 1, 2)\n" +
	"1007-                     unreachable [n_127_0_0_6 2026-11-22 02:50:02 from 127.0.0.6] (100) [AS65002i]\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.origin: IGP\n" +
	" \tBGP.as_path: 65002\n" +
	" \tBGP.next_hop: 198.51.100.8\n" +
	" \tBGP.local_pref: 100\n" +
	"1007-10.0.0.0/8           unreachable [n_2001_db8__6 2026-11-22 02:50:02] * (100) [AS65002i]\n" +
	"1008-\tType: BGP univ\n" +
	"1012-\tBGP.origin: IGP\n" +
	" \tBGP.as_path: 65002\n" +
	" \tBGP.next_hop: 2001:db8::6 fe80::6\n" +
	" \tBGP.med: 0\n" +
	"0000 \n"

func TestParseBirdRoutes(t *testing.T) {
	r := bufio.NewReader(strings.NewReader(birdShowRouteAll))
	if _, err := readBirdReply(r); err != nil {
		t.Fatalf("greeting: %v", err)
	}
	lines, err := readBirdReply(r)
	if err != nil {
		t.Fatal(err)
	}
	proto := map[string]netip.Addr{
		"n_127_0_0_3":   netip.MustParseAddr("127.0.0.3"),
		"n_127_0_0_6":   netip.MustParseAddr("127.0.0.6"),
		"n_2001_db8__6": netip.MustParseAddr("2001:db8::6"),
	}
	got, err := parseBirdRoutes(lines, proto)
	if err != nil {
		t.Fatal(err)
	}
	want := []Route{
		{
			Prefix: netip.MustParsePrefix("192.0.2.10/32"), NextHop: netip.MustParseAddr("127.0.0.3"),
			From: netip.MustParseAddr("127.0.0.3"), ASPath: []uint32{65001, 65001, 65010, 65011},
			MED: 50, HasMED: true, LocalPref: 100,
			Communities: []string{"65535:0", "65000:100"}, LargeCommunities: []string{"65000:1:2"},
		},
		{
			Prefix: netip.MustParsePrefix("192.0.2.10/32"), NextHop: netip.MustParseAddr("198.51.100.8"),
			From: netip.MustParseAddr("127.0.0.6"), ASPath: []uint32{65002}, LocalPref: 100,
		},
		{
			Prefix: netip.MustParsePrefix("10.0.0.0/8"), NextHop: netip.MustParseAddr("2001:db8::6"),
			From: netip.MustParseAddr("2001:db8::6"), ASPath: []uint32{65002}, HasMED: true,
		},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("got\n%s\nwant\n%s", routeList(got), routeList(want))
		for i := range got {
			t.Logf("%#v", got[i])
		}
	}
}

func TestReadBirdReplyError(t *testing.T) {
	r := bufio.NewReader(strings.NewReader("8003 No such protocol\n"))
	if _, err := readBirdReply(r); err == nil || !strings.Contains(err.Error(), "No such protocol") {
		t.Fatalf("err = %v, want the BIRD error text", err)
	}
}
