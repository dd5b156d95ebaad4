/*
 * t/session_id.c — session IDs name their slot (registry/reg.h, "A
 * session ID names its slot"): every created ID is a version-8 UUID whose
 * first 26 bits are its slot and whose other 96 free bits are random; a
 * lookup goes to that slot and accepts only the whole ID, so an ID with
 * the right slot and one wrong bit, or the ID of a deleted session whose
 * slot was reused, is SHMREG_ENOENT.
 *
 * And the ID index holds only sessions that live away from the slot their
 * ID names (layout 8): none of the created ones; a session restored with
 * an ID naming a taken slot is linked, found through the index, and
 * unlinked by its delete; an ID already live in the slot it names is
 * refused to a restore (SHMREG_EEXIST), though no chain holds it.
 */
#include <string.h>

#include "reg.h"
#include "shmreg_sync.h"
#include "tap.h"
#include "testutil.h"

#define N 1000

/* Is the session in slot `si` with `id` on its ID index chain? */
static int linked(shmreg *h, const shmreg_id *id, uint32_t si)
{
    return shm_index_has(&h->c.seg, &h->sessions, reg_id_hash(id->bytes), shm_slot_off(&h->c.seg, si),
                         reg_slot_link);
}

/* Sessions on all the ID index chains together. */
static unsigned chained(shmreg *h)
{
    unsigned n = 0;
    for (uint64_t b = 0; b < h->sessions.buckets; b++)
        for (uint64_t off = atomic_load(&h->sessions.bucket[b]); off && n < 100000;
             off = atomic_load(reg_slot_link(&h->c.seg, off)))
            n++;
    return n;
}

static unsigned check_problems(shmreg *h)
{
    shmreg_check_report r;
    int rc = shmreg_check(h, 0, &r, NULL, NULL, NULL);
    return rc == 0 || rc == SHMREG_ECORRUPT ? (unsigned)r.problems : 999;
}

static int get(shmreg *h, const shmreg_id *id)
{
    shmreg_session v;
    shmreg_read_begin(h);
    int rc = shmreg_session_get(h, id, &v);
    shmreg_read_end(h);
    return rc;
}

int main(void)
{
    plan(25);
    shmreg *h = test_reg_new("session-id", 2 * N, 0, 1);
    static shmreg_id id[N];
    int made = 0, v8 = 0, variant = 0, named = 0;
    static unsigned char slot_used[2 * N];
    int slots_distinct = 1;
    for (int i = 0; i < N; i++) {
        if (shmreg_session_create(h, NULL, &id[i]) != 0)
            break;
        made++;
        v8 += (id[i].bytes[6] >> 4) == 8;
        variant += (id[i].bytes[8] >> 6) == 2;
        uint32_t si, s = reg_id_slot(id[i].bytes);
        uint64_t st;
        shmreg_read_begin(h);
        named += reg_find(h, id[i].bytes, &si, &st) == 0 && si == s;
        shmreg_read_end(h);
        if (s >= 2 * N || slot_used[s]++)
            slots_distinct = 0;
    }
    is(made, N, "%d sessions created", N);
    is(v8, N, "every ID is a version-8 UUID");
    is(variant, N, "with the RFC 9562 variant bits");
    is(named, N, "and names the slot its session lives in");
    ok(slots_distinct, "no two live sessions name the same slot");

    /* The 96 free bits vary; the 6 fixed ones do not. */
    unsigned char any1[SHMREG_ID_BYTES] = {0}, all1[SHMREG_ID_BYTES];
    memset(all1, 0xff, sizeof all1);
    for (int i = 0; i < N; i++)
        for (int b = 0; b < SHMREG_ID_BYTES; b++) {
            any1[b] |= id[i].bytes[b];
            all1[b] &= id[i].bytes[b];
        }
    int varying = 0;
    for (int b = 0; b < SHMREG_ID_BYTES; b++)
        for (int k = 0; k < 8; k++) {     /* k = 0: the byte's low bit */
            if (b < 3 || (b == 3 && k >= 6))
                continue;                 /* the 26 slot bits */
            varying += (any1[b] >> k & 1) && !(all1[b] >> k & 1);
        }
    is(varying, 96, "96 bits take both values across %d IDs", N);
    ok((all1[6] & 0xf0) == 0x80 && (any1[6] & 0xf0) == 0x80 && (all1[8] & 0xc0) == 0x80 &&
       (any1[8] & 0xc0) == 0x80, "the version and variant bits never vary");

    /* One wrong bit, slot bits intact: the slot is visited, the ID refused. */
    shmreg_id forged = id[7];
    forged.bytes[12] ^= 0x10;
    is(get(h, &forged), SHMREG_ENOENT, "an ID one bit away from a live one: SHMREG_ENOENT");
    is(shmreg_session_transition(h, &forged, SHMREG_STATE_ANY, SHMREG_STATE_RINGING, NULL),
       SHMREG_ENOENT, "and no change goes through it");

    /* A slot reused by a new session: the old ID does not find the new one. */
    uint32_t old_slot = reg_id_slot(id[3].bytes);
    is(shmreg_session_delete(h, &id[3]), 0, "a session is deleted");
    shmreg_id again;
    int reused = 0;
    for (int i = 0; i < 2 * N && !reused; i++) {
        if (shmreg_session_create(h, NULL, &again) != 0)
            break;
        reused = reg_id_slot(again.bytes) == old_slot;
    }
    ok(reused, "a later session takes its slot");
    is(get(h, &id[3]), SHMREG_ENOENT, "the deleted session's ID still finds nothing there");

    /* The index holds the sessions away from their slot, and only them. */
    is(chained(h), 0, "no created session is on an ID index chain");
    is(check_problems(h), 0, "and the check agrees");
    shmreg_session s;
    memset(&s, 0, sizeof s);
    s.id = id[9];
    s.state = SHMREG_STATE_ACTIVE;
    is(shmreg_session_restore(h, &s, 0), SHMREG_EEXIST,
       "restoring an ID live in the slot it names: SHMREG_EEXIST, though no chain holds it");
    s.id.bytes[12] ^= 0x5a; /* names id[9]'s slot, which is taken */
    is(shmreg_session_restore(h, &s, 0), 0, "a session restored with an ID naming a taken slot");
    uint32_t si = UINT32_MAX;
    uint64_t st;
    shmreg_read_begin(h);
    is(reg_find(h, s.id.bytes, &si, &st), 0, "is found");
    shmreg_read_end(h);
    ok(si != reg_id_slot(s.id.bytes), "in another slot than its ID names (%u, not %u)", si,
       reg_id_slot(s.id.bytes));
    is(linked(h, &s.id, si), 1, "through its ID index chain");
    is(chained(h), 1, "the only session on any chain");
    is(check_problems(h), 0, "the check is clean");
    is(shmreg_session_restore(h, &s, 0), SHMREG_EEXIST, "restoring it again: SHMREG_EEXIST");
    is(shmreg_session_delete(h, &s.id), 0, "it deletes");
    is(chained(h), 0, "and leaves its chain");
    is(get(h, &id[9]), 0, "the session in the slot it named is untouched");
    test_reg_destroy(h);
    return exit_status();
}
