package nftmodel

import (
	"sort"
	"strconv"
	"strings"
)

// String renders the table in nft syntax, deterministically: sets (with
// their size, flags and timeout), then
// maps, each sorted by name with their elements sorted by key, then
// chains in the order given with their rules in order. A rule's comment is
// shown as `comment "..."` (without the hash the kernel copy carries).
// Elements are shown in canonical form (e.g. "10.0.0.0-10.0.0.255" as
// 10.0.0.0/24); text that does not parse is shown as given. Implicit
// dependencies (`meta nfproto`, `ether type`, `meta l4proto`) are not
// shown, as nft does not show them.
func (t *Table) String() string {
	var b strings.Builder
	b.WriteString("table " + t.Family.String() + " " + t.Name + " {\n")
	first := true
	block := func() {
		if !first {
			b.WriteString("\n")
		}
		first = false
	}
	sets := append([]*Set(nil), t.Sets...)
	sort.SliceStable(sets, func(i, j int) bool { return sets[i].Name < sets[j].Name })
	for _, s := range sets {
		block()
		b.WriteString("\tset " + s.Name + " {\n")
		b.WriteString("\t\ttype " + keyString(s.Key) + "\n")
		if s.Size != 0 {
			b.WriteString("\t\tsize " + strconv.FormatUint(uint64(s.Size), 10) + "\n")
		}
		var flags []string
		for _, f := range []struct {
			on   bool
			name string
		}{{s.Dynamic, "dynamic"}, {s.Interval, "interval"}, {s.Timeout != 0, "timeout"}} {
			if f.on {
				flags = append(flags, f.name)
			}
		}
		if len(flags) > 0 {
			b.WriteString("\t\tflags " + strings.Join(flags, ",") + "\n")
		}
		if s.Timeout != 0 {
			b.WriteString("\t\ttimeout " + durationText(s.Timeout) + "\n")
		}
		if s.Comment != "" {
			b.WriteString("\t\tcomment " + strconv.Quote(s.Comment) + "\n")
		}
		if len(s.Elements) > 0 {
			b.WriteString("\t\telements = { " + strings.Join(renderElements(s.Key, s.Interval, s.Elements), ", ") + " }\n")
		}
		b.WriteString("\t}\n")
	}
	maps := append([]*Map(nil), t.Maps...)
	sort.SliceStable(maps, func(i, j int) bool { return maps[i].Name < maps[j].Name })
	for _, m := range maps {
		block()
		b.WriteString("\tmap " + m.Name + " {\n")
		val := "verdict"
		if !m.Verdict {
			val = keyString(m.Value)
		}
		b.WriteString("\t\ttype " + keyString(m.Key) + " : " + val + "\n")
		if m.Interval {
			b.WriteString("\t\tflags interval\n")
		}
		if m.Comment != "" {
			b.WriteString("\t\tcomment " + strconv.Quote(m.Comment) + "\n")
		}
		if len(m.Elements) > 0 {
			keys := make([]string, 0, len(m.Elements))
			for k := range m.Elements {
				keys = append(keys, k)
			}
			order, rendered := sortElements(m.Key, m.Interval, keys)
			parts := make([]string, len(order))
			for i, k := range order {
				parts[i] = rendered[i] + " : " + renderMapValue(m, m.Elements[k])
			}
			b.WriteString("\t\telements = { " + strings.Join(parts, ", ") + " }\n")
		}
		b.WriteString("\t}\n")
	}
	byName := mapsByName(t.Maps)
	for _, c := range t.Chains {
		block()
		b.WriteString("\tchain " + c.Name + " {\n")
		if c.IsBase() {
			dev := ""
			if c.Device != "" {
				dev = " device " + strconv.Quote(c.Device)
			}
			b.WriteString("\t\ttype " + string(c.Type) + " hook " + string(c.Hook) + dev +
				" priority " + priorityText(t.Family, c.Hook, c.Priority) + "; policy " + string(c.policy()) + ";\n")
		}
		for _, r := range c.Rules {
			b.WriteString("\t\t" + exprsText(r.Exprs, byName))
			if r.Comment != "" {
				b.WriteString(" comment " + strconv.Quote(r.Comment))
			}
			b.WriteString("\n")
		}
		b.WriteString("\t}\n")
	}
	b.WriteString("}\n")
	return b.String()
}

func renderMapValue(m *Map, v string) string {
	if m.Verdict {
		return strings.Join(strings.Fields(v), " ")
	}
	if x, err := parseElement(m.Value, v, modeSingle); err == nil {
		return x.nftText(m.Value)
	}
	return v
}

// renderElements returns the nft text of elements, sorted by value
// (unparseable ones last, as given).
func renderElements(keys []KeyType, interval bool, texts []string) []string {
	_, out := sortElements(keys, interval, texts)
	return out
}

// sortElements sorts element texts by value (unparseable ones last, by
// text) and returns them with their nft renderings.
func sortElements(keys []KeyType, interval bool, texts []string) (sorted, rendered []string) {
	mode := modeFor(interval)
	type item struct {
		e          element
		text, nftx string
	}
	var good, bad []item
	for _, t := range texts {
		e, err := parseElement(keys, t, mode)
		if err != nil {
			bad = append(bad, item{text: t, nftx: t})
			continue
		}
		good = append(good, item{e, t, e.nftText(keys)})
	}
	sort.SliceStable(good, func(i, j int) bool { return good[i].e.compare(good[j].e) < 0 })
	sort.SliceStable(bad, func(i, j int) bool { return bad[i].text < bad[j].text })
	for _, it := range append(good, bad...) {
		sorted = append(sorted, it.text)
		rendered = append(rendered, it.nftx)
	}
	return sorted, rendered
}

// priorityText renders a base chain priority as nft does: a standard name
// where one applies to the family and hook, a number otherwise.
func priorityText(f Family, h Hook, p int) string {
	if f == FamilyNetdev {
		if p == PriorityFilter {
			return "filter"
		}
		return strconv.Itoa(p)
	}
	if f == FamilyBridge {
		switch {
		case p == PriorityBridgeFilter:
			return "filter"
		case p == PriorityBridgeDstNAT && h == HookPrerouting:
			return "dstnat"
		case p == PriorityBridgeOut && h == HookOutput:
			return "out"
		case p == PriorityBridgeSrcNAT && h == HookPostrouting:
			return "srcnat"
		}
		return strconv.Itoa(p)
	}
	switch p {
	case PriorityRaw:
		return "raw"
	case PriorityMangle:
		return "mangle"
	case PriorityFilter:
		return "filter"
	case PrioritySecurity:
		return "security"
	case PriorityDstNAT:
		if h == HookPrerouting || h == HookOutput {
			return "dstnat"
		}
	case PrioritySrcNAT:
		if h == HookPostrouting || h == HookInput {
			return "srcnat"
		}
	}
	return strconv.Itoa(p)
}

// contextual is implemented by Exprs whose text depends on the table (a
// NAT map statement shows the family of its map's values).
type contextual interface {
	textIn(maps map[string]*Map) string
}

// exprsText renders a rule's expressions; maps (which may be nil) are the
// table's maps by name.
func exprsText(es []Expr, maps map[string]*Map) string {
	s := make([]string, len(es))
	for i, e := range es {
		switch e := e.(type) {
		case nil:
			s[i] = "<nil>"
		case contextual:
			s[i] = e.textIn(maps)
		default:
			s[i] = e.String()
		}
	}
	return strings.Join(s, " ")
}

// mapsByName indexes maps by name (the first of a duplicated name wins).
func mapsByName(ms []*Map) map[string]*Map {
	out := make(map[string]*Map, len(ms))
	for _, m := range ms {
		if m != nil {
			if _, dup := out[m.Name]; !dup {
				out[m.Name] = m
			}
		}
	}
	return out
}
