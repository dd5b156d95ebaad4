/*
 * corrupt.c — a corrupted or foreign segment yields a clear error, never a
 * wild read or a crash: bad headers are refused at attach, bad offsets and
 * lengths inside the segment give SHMREG_ECORRUPT, and shmreg_check names
 * the problems. Uses the private headers to do the damage precisely.
 */
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#include "reg.h"
#include "tap.h"
#include "testutil.h"

static shmreg_options opts = {.flags = SHMREG_CREATE, .max_sessions = 64};

static shm_header *map_header(const char *dir, int *fd, off_t *size)
{
    char p[512];
    snprintf(p, sizeof p, "%s/segment", dir);
    *fd = open(p, O_RDWR);
    struct stat st;
    fstat(*fd, &st);
    *size = st.st_size;
    return mmap(NULL, (size_t)st.st_size, PROT_READ | PROT_WRITE, MAP_SHARED, *fd, 0);
}

static void unmap_header(shm_header *hd, int fd, off_t size)
{
    munmap(hd, (size_t)size);
    close(fd);
}

/* Make a registry, damage its header with `damage`, try to attach. */
static int attach_after(void (*damage)(shm_header *, int fd, off_t size), const char *name)
{
    const char *dir = test_dir(name);
    shmreg *h;
    if (shmreg_open(dir, &opts, &h) != 0)
        return 999;
    shmreg_close(h);
    int fd;
    off_t size;
    shm_header *hd = map_header(dir, &fd, &size);
    damage(hd, fd, size);
    unmap_header(hd, fd, size);
    int rc = shmreg_open(dir, NULL, &h);
    if (rc == 0)
        shmreg_close(h);
    return rc;
}

static void bad_magic(shm_header *hd, int fd, off_t size) { (void)fd; (void)size; hd->f.magic[0] ^= 1; }
static void bad_field(shm_header *hd, int fd, off_t size) { (void)fd; (void)size; hd->f.slots++; }
static void new_version(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.layout_version = 99;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
static void other_uid(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.uid += 1;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
static void shifted_offsets(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.off_heap += 4096;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
/* What another build would write: the same format version, but a record
 * of another size (a session slot that grew, a mutex of another libc). */
static void other_slot_size(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.record_bytes[SHM_ENGINE_RECORDS] += 8;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
static void other_lock_size(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.record_bytes[1] -= 8;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
static void fewer_records(shm_header *hd, int fd, off_t size)
{
    (void)fd; (void)size;
    hd->f.nrecords--;
    hd->f.checksum = shm_fixed_checksum(&hd->f);
}
static void truncated(shm_header *hd, int fd, off_t size) { (void)hd; (void)!ftruncate(fd, size - 4096); }

static void test_headers(void)
{
    is(attach_after(bad_magic, "magic"), SHMREG_EVERSION, "wrong magic: SHMREG_EVERSION");
    ok(strstr(shmreg_errmsg(), "magic") != NULL, "and the message says the magic differs (%s)", shmreg_errmsg());
    is(attach_after(new_version, "version"), SHMREG_EVERSION, "another layout version: SHMREG_EVERSION");
    ok(strstr(shmreg_errmsg(), "layout version 99") != NULL, "and the message names it (%s)", shmreg_errmsg());
    is(attach_after(bad_field, "field"), SHMREG_ECORRUPT, "a scribbled header field: SHMREG_ECORRUPT");
    ok(strstr(shmreg_errmsg(), "checksum") != NULL, "caught by the checksum (%s)", shmreg_errmsg());
    is(attach_after(shifted_offsets, "offsets"), SHMREG_ECORRUPT, "region offsets that disagree: SHMREG_ECORRUPT");
    ok(strstr(shmreg_errmsg(), "offsets") != NULL, "and the message says so (%s)", shmreg_errmsg());
    is(attach_after(other_slot_size, "slotsize"), SHMREG_EVERSION,
       "a session slot of another size (another build): SHMREG_EVERSION");
    char want[96];
    snprintf(want, sizeof want, "session slot is %zu bytes, this build's is %zu",
             sizeof(reg_sess) + 8, sizeof(reg_sess));
    ok(strstr(shmreg_errmsg(), want) != NULL,
       "and the message names the record and both sizes (%s)", shmreg_errmsg());
    is(attach_after(other_lock_size, "locksize"), SHMREG_EVERSION,
       "a robust lock of another size (another libc): SHMREG_EVERSION");
    snprintf(want, sizeof want, "robust lock is %zu bytes, this build's is %zu",
             sizeof(shm_lock) - 8, sizeof(shm_lock));
    ok(strstr(shmreg_errmsg(), want) != NULL,
       "and the message names the lock (%s)", shmreg_errmsg());
    is(attach_after(fewer_records, "nrecords"), SHMREG_EVERSION,
       "a header describing fewer record kinds: SHMREG_EVERSION");
    snprintf(want, sizeof want, "%u record kinds, this build %u",
             SHM_ENGINE_RECORDS + REG_NRECORDS - 1, SHM_ENGINE_RECORDS + REG_NRECORDS);
    ok(strstr(shmreg_errmsg(), want) != NULL,
       "and the message gives both counts (%s)", shmreg_errmsg());
    is(attach_after(truncated, "trunc"), SHMREG_ECORRUPT, "a truncated file: SHMREG_ECORRUPT");
    ok(strstr(shmreg_errmsg(), "bytes") != NULL, "and the message gives both sizes (%s)", shmreg_errmsg());
    is(attach_after(other_uid, "uid"), SHMREG_EPERM, "a header naming another creator uid: SHMREG_EPERM");
}

/* ---------------------------------------------------------------- offsets */

static int count_problems_n;
static void count_problem(void *arg, const char *what)
{
    (void)arg;
    if (count_problems_n++ < 3)
        diag("check: %s", what);
}

static int check_problems(shmreg *h, int *rc)
{
    shmreg_check_report r;
    count_problems_n = 0;
    *rc = shmreg_check(h, 0, &r, count_problem, NULL, NULL);
    return (int)r.problems;
}

typedef struct victim {
    shmreg *h;
    shmreg_id id;
    reg_sess *slot;
} victim;

static void make_victim(victim *v, const char *name)
{
    shmreg_open(test_dir(name), &opts, &v->h);
    shmreg_fields f = {0};
    f.str[SHMREG_FIELD_CALL_ID] = (shmreg_str){"abc@host", 8};
    shmreg_session_create(v->h, &f, &v->id);
    shmreg_session_set_sdp(v->h, &v->id, SHMREG_SDP_LOCAL, "v=0\r\n", 5);
    shmreg_dialog_bind(v->h, (shmreg_str){"abc@host", 8}, (shmreg_str){"l1", 2}, (shmreg_str){"r1", 2}, &v->id);
    uint32_t si = 0;
    uint64_t st;
    shmreg_read_begin(v->h);
    reg_find(v->h, v->id.bytes, &si, &st);
    shmreg_read_end(v->h);
    v->slot = reg_slot(v->h, si);
}

static int get_rc(victim *v)
{
    shmreg_session s;
    shmreg_read_begin(v->h);
    int rc = shmreg_session_get(v->h, &v->id, &s);
    shmreg_read_end(v->h);
    return rc;
}

static void test_offsets(void)
{
    static const uint64_t bad[] = {1, 4095, 4096 + 8, (uint64_t)1 << 40, UINT64_MAX - 7};
    victim v;
    make_victim(&v, "info");
    uint64_t good = atomic_load(&v.slot->rec);
    int all = 1;
    for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
        atomic_store(&v.slot->rec, bad[i]);
        all &= get_rc(&v) == SHMREG_ECORRUPT;
    }
    ok(all, "a record offset outside the heap, in the header, misaligned or huge: SHMREG_ECORRUPT");
    int rc, n = check_problems(v.h, &rc);
    ok(n >= 1 && rc == SHMREG_ECORRUPT, "shmreg_check names the bad offset (%d problem(s))", n);
    atomic_store(&v.slot->rec, good);
    is(get_rc(&v), 0, "restored, the session reads again");
    is(check_problems(v.h, &rc), 0, "and the check is clean");

    shm_blk *b = shm_blk_at(&v.h->c.seg, good);
    reg_rec *in = reg_payload(b);
    uint16_t keep = in->len[SHMREG_FIELD_CALL_ID];
    in->len[SHMREG_FIELD_CALL_ID] = 1000; /* runs past the block's end */
    is(get_rc(&v), SHMREG_ECORRUPT, "a string length that overruns its block: SHMREG_ECORRUPT");
    ok(strstr(shmreg_errmsg(), "session field 3 ") != NULL, "and the message names the field (%s)",
       shmreg_errmsg());
    in->len[SHMREG_FIELD_CALL_ID] = keep;
    in->len[SHMREG_FIELD_CODEC] = 0xffff; /* over SHMREG_MAX_STR (the victim has no codec) */
    is(get_rc(&v), SHMREG_ECORRUPT, "a string length over SHMREG_MAX_STR: SHMREG_ECORRUPT");
    ok(strstr(shmreg_errmsg(), "session field 6 ") != NULL, "and the message names the field (%s)",
       shmreg_errmsg());
    in->len[SHMREG_FIELD_CODEC] = 0;

    uint32_t keep_sdp = in->sdp_len[0];
    in->sdp_len[0] = 0x7fffffff;
    is(get_rc(&v), SHMREG_ECORRUPT, "an SDP length of 2 GiB: SHMREG_ECORRUPT");
    n = check_problems(v.h, &rc);
    ok(n >= 1, "the check reports it (%d)", n);
    in->sdp_len[0] = (uint32_t)shm_blk_capacity(b);
    is(get_rc(&v), SHMREG_ECORRUPT, "an SDP length within the limit that overruns the record: SHMREG_ECORRUPT");
    in->sdp_len[0] = keep_sdp;
    in->ext[1] = 8;
    is(get_rc(&v), SHMREG_ECORRUPT, "an outside SDP offset in the header: SHMREG_ECORRUPT");
    in->ext[1] = 0;
    is(get_rc(&v), 0, "restored, it reads again");

    /* Index chains. A lookup goes to the slot its ID names first, so the
     * chains are walked for an ID that slot does not hold: same slot bits
     * and same hash bytes (8-15), another byte 5. */
    const shm_seg *s = &v.h->c.seg;
    shmreg_id other = v.id;
    other.bytes[5] ^= 0xff;
    shmreg_session sv;
    _Atomic uint64_t *head = shm_index_head(&v.h->sessions, reg_id_hash(v.id.bytes));
    uint64_t keepb = atomic_load(head);
    atomic_store(head, shm_slot_off(s, s->slots - 1) + SHM_SLOT_BYTES * 5);
    shmreg_read_begin(v.h);
    is(shmreg_session_get(v.h, &other, &sv), SHMREG_ECORRUPT,
       "a session index entry past the table: SHMREG_ECORRUPT");
    shmreg_read_end(v.h);
    is(get_rc(&v), 0, "while the session itself is still found in the slot its ID names");
    atomic_store(head, keepb);
    /* The session lives in the slot its ID names, so it is in no chain
     * (layout 8): link it in as the head, pointing at itself. */
    uint64_t keepn = atomic_load(&v.slot->next), self = (uint64_t)((char *)v.slot - (char *)s->base);
    atomic_store(head, self);
    atomic_store(&v.slot->next, self);
    shmreg_read_begin(v.h);
    is(shmreg_session_get(v.h, &other, &sv), SHMREG_ECORRUPT,
       "a looping chain ends in SHMREG_ECORRUPT, not an endless walk");
    shmreg_read_end(v.h);
    n = check_problems(v.h, &rc);
    ok(n >= 1, "the check reports the loop (%d)", n);
    atomic_store(&v.slot->next, keepn);
    atomic_store(head, keepb);

    shmreg_id got;
    uint64_t rec = atomic_load(&v.slot->dlg[0]);
    reg_dlg *dl = reg_dialog_at(v.h, rec);
    _Atomic uint64_t *dhead = shm_index_head(&v.h->dialogs, dl->hash);
    uint64_t keepd = atomic_load(dhead);
    atomic_store(dhead, 12345);
    is(shmreg_dialog_find(v.h, (shmreg_str){"abc@host", 8}, (shmreg_str){"l1", 2}, (shmreg_str){"r1", 2}, &got),
       SHMREG_ECORRUPT, "a dialog chain pointing nowhere: SHMREG_ECORRUPT");
    n = check_problems(v.h, &rc);
    ok(n >= 1 && rc == SHMREG_ECORRUPT, "the check reports it (%d)", n);
    atomic_store(dhead, keepd);
    is(shmreg_dialog_find(v.h, (shmreg_str){"abc@host", 8}, (shmreg_str){"l1", 2}, (shmreg_str){"r1", 2}, &got),
       0, "restored, the dialog is found");
    is(check_problems(v.h, &rc), 0, "and the whole registry checks clean");
    is(rc, 0, "shmreg_check returns 0");

    /* Random garbage over the session table and the heap never crashes
     * a reader, an iterator or the check. */
    unsigned seed = 12345;
    for (int round = 0; round < 200; round++) {
        unsigned char *p = s->base + s->off_slots;
        uint64_t span = s->off_ring - s->off_slots;
        for (int k = 0; k < 64; k++)
            p[rand_r(&seed) % span] = (unsigned char)rand_r(&seed);
        shmreg_read_begin(v.h);
        uint64_t cur = 0;
        shmreg_session x;
        for (int k = 0; k < 100 && shmreg_session_next(v.h, &cur, 0, &x) != SHMREG_ENOENT; k++)
            ;
        shmreg_session_get(v.h, &v.id, &x);
        shmreg_read_end(v.h);
        shmreg_check(v.h, 0, NULL, NULL, NULL, NULL);
    }
    ok(1, "200 rounds of random scribbling over slots and heap: readers, iterators and check survive");
    shmreg_close(v.h);
}

int main(void)
{
    test_headers();
    test_offsets();
    done_testing();
}
