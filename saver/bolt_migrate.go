package saver

import (
	"bytes"
	"log/slog"
	"slices"

	bolt "go.etcd.io/bbolt"
)

// Layout 2 to 3 (docs/storage.md "Migration from the previous version"):
// layout 2 kept one backs record per (broadcast, uid), layout 3 one cursor
// per (uid, app). At open, assignSeqs gives every broadcast a seq in id
// order (one transaction: broadcasts are few), then migrateBolt2 folds the
// backs records into cursors in chunks of migrateChunk records, each chunk
// deleting the records it folded in the same transaction, so a crash
// midway resumes where it stopped and no record counts twice. The version
// key becomes 3 with the transaction that finds backs empty and drops it.

// migrateChunk bounds the backs records one migration transaction folds
// (a var: tests lower it).
var migrateChunk = 5000

// assignSeqs gives a seq to every broadcast without one, in id order.
func assignSeqs(tx *bolt.Tx) error {
	seqs := tx.Bucket(bucketBseq)
	c := tx.Bucket(bucketBcast).Cursor()
	var missing [][]byte
	for k, _ := c.First(); k != nil; k, _ = c.Next() {
		if len(k) == 8 && len(seqs.Get(k)) != 8 {
			missing = append(missing, bytes.Clone(k))
		}
	}
	for _, k := range missing { // keys ascend: seqs follow id order
		if _, err := broadcastSeq(tx, k); err != nil {
			return err
		}
	}
	return nil
}

// migrateBolt2 folds a layout 2 file's backs records into cursors and marks
// the file layout 3.
func migrateBolt2(db *bolt.DB, log *slog.Logger, chunk int) error {
	// Every stored broadcast, expired or not, by app in seq order: the
	// cursors are normalized against them here, so that nothing a uid did
	// is dropped before the broadcast really goes.
	all := map[uint32][]uint64{}
	refs := map[uint64]bref{}
	err := db.View(func(tx *bolt.Tx) error {
		seqs := tx.Bucket(bucketBseq)
		return tx.Bucket(bucketBcast).ForEach(func(k, v []byte) error {
			seq := seqs.Get(k)
			app, expire, err := decodeHeader(v)
			if len(k) != 8 || len(seq) != 8 || err != nil {
				return nil // corrupt: skipped at open too
			}
			r := bref{id: beUint64(k), seq: beUint64(seq), app: app, expire: expire}
			refs[r.id] = r
			all[app] = append(all[app], r.seq)
			return nil
		})
	})
	if err != nil {
		return err
	}
	for _, s := range all {
		slices.Sort(s)
	}
	log.Info("saver: migrating file layout 2 to 3 (broadcast cursors)", "broadcasts", len(refs))
	total := 0
	for {
		var n int
		var done bool
		err := db.Update(func(tx *bolt.Tx) error {
			n, done = 0, false
			var err error
			n, done, err = foldBacks(tx, refs, all, chunk)
			return err
		})
		if err != nil {
			return err
		}
		total += n
		if done {
			log.Info("saver: file layout 3", "records folded", total)
			return nil
		}
	}
}

// foldBacks folds up to chunk backs records into cursors and deletes them;
// done: none was left, the bucket is gone and the version is 3.
func foldBacks(tx *bolt.Tx, refs map[uint64]bref, all map[uint32][]uint64, chunk int) (int, bool, error) {
	backs := tx.Bucket(bucketBacks)
	if backs == nil {
		return 0, true, tx.Bucket(bucketMeta).Put(keyVersion, fileVersion)
	}
	type rec struct{ k, v []byte }
	var recs []rec
	c := backs.Cursor()
	for k, v := c.First(); k != nil && len(recs) < chunk; k, v = c.Next() {
		recs = append(recs, rec{bytes.Clone(k), bytes.Clone(v)})
	}
	if len(recs) == 0 {
		if err := tx.DeleteBucket(bucketBacks); err != nil {
			return 0, false, err
		}
		return 0, true, tx.Bucket(bucketMeta).Put(keyVersion, fileVersion)
	}
	curs := tx.Bucket(bucketBcur)
	for _, r := range recs {
		if err := backs.Delete(r.k); err != nil {
			return 0, false, err
		}
		if len(r.k) <= 8 || len(r.v) > 1 {
			continue // corrupt: it never meant anything to Load either
		}
		ref, ok := refs[beUint64(r.k)]
		if !ok {
			continue // its broadcast is gone: so is what the uid did with it
		}
		e := bexc{Seq: ref.seq, State: bexcAcked}
		switch {
		case isParked(r.v):
			e.State = bexcParked
		case len(r.v) == 1:
			e.State, e.Loads = bexcLoading, r.v[0]
		}
		key := bcurKey(nil, string(r.k[8:]), ref.app)
		cur := getCursor(curs, key)
		cur.merge(e)
		cur.normalize(all[ref.app])
		if err := putCursor(curs, key, &cur); err != nil {
			return 0, false, err
		}
	}
	return len(recs), false, nil
}
