package store

// Snapshot is every record of a store: bucket, then key, then value.
type Snapshot map[string]map[string][]byte

// Take returns a copy of every record of every bucket in tx.
func Take(tx Tx) (Snapshot, error) {
	out := Snapshot{}
	for _, b := range Buckets {
		out[b] = map[string][]byte{}
		if err := tx.ForEach(b, "", func(k string, v []byte) error {
			out[b][k] = append([]byte(nil), v...)
			return nil
		}); err != nil {
			return nil, err
		}
	}
	return out, nil
}

// Replace makes tx hold exactly the records of snap (none for a nil one),
// as putting a backup back does.
func Replace(tx Tx, snap Snapshot) error {
	for _, b := range Buckets {
		var keys []string
		if err := tx.ForEach(b, "", func(k string, _ []byte) error { keys = append(keys, k); return nil }); err != nil {
			return err
		}
		for _, k := range keys {
			if err := tx.Delete(b, k); err != nil {
				return err
			}
		}
		for k, v := range snap[b] {
			if err := tx.Put(b, k, v); err != nil {
				return err
			}
		}
	}
	return nil
}
