package api

import (
	"bytes"
	"encoding/json"
	"reflect"
	"sort"
	"strings"
	"sync"
)

// Extra holds the top-level fields of a document that this version of the
// schema does not model. They are stored and written back unchanged, so a
// client reads back every field it set, even those hostnet ignores.
type Extra map[string]json.RawMessage

var knownKeysCache sync.Map // reflect.Type -> map[string]bool

// knownKeys returns the lower-cased JSON keys of struct type t, as
// encoding/json matches keys case-insensitively.
func knownKeys(t reflect.Type) map[string]bool {
	if v, ok := knownKeysCache.Load(t); ok {
		return v.(map[string]bool)
	}
	keys := map[string]bool{}
	for i := 0; i < t.NumField(); i++ {
		f := t.Field(i)
		name := f.Name
		if tag, ok := f.Tag.Lookup("json"); ok {
			if tag == "-" {
				continue
			}
			if n, _, _ := strings.Cut(tag, ","); n != "" {
				name = n
			}
		}
		keys[strings.ToLower(name)] = true
	}
	knownKeysCache.Store(t, keys)
	return keys
}

// isKnown reports whether encoding/json decodes key k into one of the
// fields named in known. It matches names with Unicode case folding, not
// only ASCII: "Ipam\u017f" (long s) fills Ipams, so it must not be kept as
// an unknown field too, or it would overwrite Ipams when the document is
// encoded and decoded again, after validation.
func isKnown(known map[string]bool, k string) bool {
	for name := range known {
		if strings.EqualFold(name, k) {
			return true
		}
	}
	return false
}

// decodeWithExtra decodes data into v (a pointer to a struct without custom
// decoding) and returns the fields v's type does not know.
func decodeWithExtra(data []byte, v any) (Extra, error) {
	if err := json.Unmarshal(data, v); err != nil {
		return nil, err
	}
	var all map[string]json.RawMessage
	if err := json.Unmarshal(data, &all); err != nil {
		return nil, err
	}
	known := knownKeys(reflect.TypeOf(v).Elem())
	var extra Extra
	for k, raw := range all {
		if !isKnown(known, k) {
			if extra == nil {
				extra = Extra{}
			}
			extra[k] = raw
		}
	}
	return extra, nil
}

// encodeWithExtra encodes v (a struct without custom encoding) and appends
// the extra fields, in key order so the output is deterministic.
func encodeWithExtra(v any, extra Extra) ([]byte, error) {
	b, err := json.Marshal(v)
	if err != nil || len(extra) == 0 {
		return b, err
	}
	keys := make([]string, 0, len(extra))
	for k := range extra {
		keys = append(keys, k)
	}
	sort.Strings(keys)
	var buf bytes.Buffer
	buf.Write(b[:len(b)-1])
	for i, k := range keys {
		if i > 0 || len(b) > 2 {
			buf.WriteByte(',')
		}
		kb, _ := json.Marshal(k)
		buf.Write(kb)
		buf.WriteByte(':')
		buf.Write(extra[k])
	}
	buf.WriteByte('}')
	return buf.Bytes(), nil
}
