/*
 * Load generator for the capitalization benchmark: one epoll thread drives
 * many sockets, so it can saturate a server pinned to another core.
 *
 * Every reply byte is compared with the expected bytes (the reference
 * transform of the request, computed by the caller and passed as a file),
 * so a fast but wrong server is caught, whatever the text's encoding.
 *
 *   loadgen tcp   PORT CONNS WINDOW SECONDS REQUEST EXPECT
 *   loadgen churn PORT CONCURRENCY SECONDS REQUEST EXPECT
 *   loadgen udp   PORT SOCKETS WINDOW SECONDS REQUEST EXPECT
 *
 * tcp: each connection keeps WINDOW requests in flight on one stream (1 is
 * request/response; more is a bulk stream). churn: a new connection per
 * request, closed after its reply. udp: each socket keeps WINDOW datagrams
 * in flight; a socket that hears nothing for 20 ms counts them lost.
 * Prints one JSON line of counts; the target is always 127.0.0.1.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define HIST_US 1000000            /* latency histogram: 1 us buckets up to 1 s */
#define UDP_LOSS_NS 20000000ULL

static char *request, *expect;
static size_t request_len, expect_len;
static uint32_t hist[HIST_US + 1];
static uint64_t ops, bytes_ok, bad, errors, lost;

struct conn {
    int fd;
    size_t sent_off;      /* bytes of the current request already written */
    size_t recv_off;      /* position of the next reply byte in expect */
    long inflight;        /* requests started and not fully answered */
    int want_out;
    uint64_t last_ns;     /* udp: when the socket last heard a reply */
    uint64_t *started;    /* ring of start times, one per request in flight */
    long ring_size, head;
    long answered;        /* whole replies received on this connection */
};

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000ULL + (uint64_t)ts.tv_nsec;
}

static void die(const char *what)
{
    perror(what);
    exit(2);
}

static char *slurp(const char *path, size_t *len)
{
    FILE *f = fopen(path, "rb");
    if (!f)
        die(path);
    fseek(f, 0, SEEK_END);
    long size = ftell(f);
    rewind(f);
    char *data = malloc(size > 0 ? (size_t)size : 1);
    if (!data || fread(data, 1, (size_t)size, f) != (size_t)size)
        die(path);
    fclose(f);
    *len = (size_t)size;
    return data;
}

static struct sockaddr_in target(int port)
{
    struct sockaddr_in addr = {.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    return addr;
}

static void record_latency(uint64_t ns)
{
    uint64_t us = ns / 1000;
    hist[us > HIST_US ? HIST_US : us]++;
}

static long percentile(double p)
{
    uint64_t total = 0, seen = 0;
    for (long i = 0; i <= HIST_US; i++)
        total += hist[i];
    if (total == 0)
        return -1;
    uint64_t rank = (uint64_t)(p * (double)total);
    for (long i = 0; i <= HIST_US; i++) {
        seen += hist[i];
        if (seen > rank)
            return i;
    }
    return HIST_US;
}

static void watch(int ep, struct conn *c, int out)
{
    struct epoll_event ev = {.events = EPOLLIN | (out ? EPOLLOUT : 0), .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev) < 0)
        die("epoll_ctl");
    c->want_out = out;
}

static void drop(struct conn *c)
{
    close(c->fd);
    c->fd = -1;
}

/* Compare received bytes with the expected reply stream; count whole replies. */
static int check(struct conn *c, const char *data, size_t n, uint64_t t, int counting)
{
    while (n > 0) {
        size_t take = expect_len - c->recv_off;
        if (take > n)
            take = n;
        if (memcmp(data, expect + c->recv_off, take) != 0)
            return -1;
        if (counting)
            bytes_ok += take;
        c->recv_off += take;
        data += take;
        n -= take;
        if (c->recv_off == expect_len) {
            c->recv_off = 0;
            if (c->inflight <= 0)
                return -1; /* more reply than was asked for */
            if (counting) {
                ops++;
                record_latency(t - c->started[c->head]);
            }
            c->head = (c->head + 1) % c->ring_size;
            c->inflight--;
            c->answered++;
        }
    }
    return 0;
}

enum received { RECEIVED, FAILED, WRONG };

/* Read what the server sent on C and check it: FAILED for a closed or broken
 * connection, WRONG for a reply that differs from the expected one. */
static enum received receive(struct conn *c, char *buf, size_t size, uint64_t t, int counting)
{
    ssize_t got = recv(c->fd, buf, size, 0);
    if (got < 0 && errno == EAGAIN)
        return RECEIVED;
    if (got <= 0)
        return FAILED;
    return check(c, buf, (size_t)got, t, counting) < 0 ? WRONG : RECEIVED;
}

/* Print the counts as one JSON line; percentiles are -1 when none were recorded. */
static void print_counts(uint64_t start, uint64_t end)
{
    printf("{\"ops\": %lu, \"bytes\": %lu, \"seconds\": %.6f, \"bad\": %lu, \"errors\": %lu, "
           "\"lost\": %lu, \"p50_us\": %ld, \"p99_us\": %ld}\n",
           ops, bytes_ok, (double)(end - start) / 1e9, bad, errors, lost, percentile(0.50),
           percentile(0.99));
}

/* Write requests until WINDOW are in flight or the socket is full. */
static int send_more(int ep, struct conn *c, long window)
{
    while (c->sent_off > 0 || c->inflight < window) {
        ssize_t n = send(c->fd, request + c->sent_off, request_len - c->sent_off, MSG_NOSIGNAL);
        if (n < 0) {
            if (errno == EAGAIN || errno == EWOULDBLOCK) {
                if (!c->want_out)
                    watch(ep, c, 1);
                return 0;
            }
            return -1;
        }
        if (c->sent_off == 0) {
            c->started[(c->head + c->inflight) % c->ring_size] = now_ns();
            c->inflight++;
        }
        c->sent_off += (size_t)n;
        if (c->sent_off == request_len)
            c->sent_off = 0;
    }
    if (c->want_out)
        watch(ep, c, 0);
    return 0;
}

static void make_ring(struct conn *c, long size)
{
    c->started = calloc((size_t)size, sizeof *c->started);
    if (!c->started)
        die("calloc");
    c->ring_size = size;
}

/*
 * LOADGEN_SOURCE=127.0.0.N (any loopback address) makes every socket
 * connect from that address: each load generator of a many-core run gets
 * its own 64k source ports, so churn is not capped by one address's.
 */
static void bind_source(int fd)
{
    const char *source = getenv("LOADGEN_SOURCE");
    struct sockaddr_in addr = {.sin_family = AF_INET};
    int one = 1;
    if (!source)
        return;
    if (inet_pton(AF_INET, source, &addr.sin_addr) != 1)
        die("LOADGEN_SOURCE");
    /* Choose the port at connect, from the whole 4-tuple, not at bind. */
    setsockopt(fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof one);
    if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
}

static int open_socket(int type)
{
    int fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (fd < 0)
        die("socket");
    if (type == SOCK_STREAM) {
        int one = 1;
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    }
    bind_source(fd);
    return fd;
}

static void add(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    if (epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev) < 0)
        die("epoll_ctl");
}

static void run_tcp(int port, long conns, long window, double seconds)
{
    struct sockaddr_in addr = target(port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)conns, sizeof *cs);
    static char buf[1 << 16];
    for (long i = 0; i < conns; i++) {
        struct conn *c = &cs[i];
        c->fd = open_socket(SOCK_STREAM);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0 && errno != EINPROGRESS)
            die("connect");
        make_ring(c, window);
        add(ep, c, EPOLLIN | EPOLLOUT);
        c->want_out = 1;
    }
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), t = start;
    struct epoll_event evs[256];
    while (t < end) {
        int n = epoll_wait(ep, evs, 256, 10);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            if (evs[i].events & (EPOLLIN | EPOLLERR | EPOLLHUP)) {
                enum received r = receive(c, buf, sizeof buf, t, t < end);
                if (r != RECEIVED) {
                    if (r == WRONG)
                        bad++;
                    else
                        errors++;
                    drop(c);
                    continue;
                }
            }
            if (send_more(ep, c, window) < 0) {
                errors++;
                drop(c);
            }
        }
    }
    print_counts(start, end);
}

static void churn_start(int ep, struct conn *c, struct sockaddr_in *addr)
{
    c->fd = open_socket(SOCK_STREAM);
    c->sent_off = c->recv_off = 0;
    c->inflight = c->head = c->answered = 0;
    if (connect(c->fd, (struct sockaddr *)addr, sizeof *addr) < 0 && errno != EINPROGRESS) {
        errors++; /* EADDRNOTAVAIL: the ephemeral ports are used up */
        close(c->fd);
        c->fd = -1;
        return;
    }
    add(ep, c, EPOLLIN | EPOLLOUT);
    c->want_out = 1;
}

static void run_churn(int port, long concurrency, double seconds)
{
    struct sockaddr_in addr = target(port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)concurrency, sizeof *cs);
    static char buf[1 << 16];
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), t = start;
    for (long i = 0; i < concurrency; i++) {
        make_ring(&cs[i], 1);
        churn_start(ep, &cs[i], &addr);
    }
    struct epoll_event evs[256];
    while (t < end) {
        int n = epoll_wait(ep, evs, 256, 10);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c->fd < 0)
                continue;
            int failed = 0;
            if (evs[i].events & (EPOLLERR | EPOLLHUP) && !(evs[i].events & EPOLLIN))
                failed = 1;
            else if (evs[i].events & EPOLLIN) {
                enum received r = receive(c, buf, sizeof buf, t, t < end);
                if (r == WRONG) {
                    bad++;
                    drop(c);
                    churn_start(ep, c, &addr);
                    continue;
                }
                failed = r == FAILED;
            }
            if (!failed && c->answered) {
                drop(c); /* the reply is complete: close and start the next */
                churn_start(ep, c, &addr);
                continue;
            }
            if (!failed && (evs[i].events & EPOLLOUT) && c->inflight == 0 && send_more(ep, c, 1) < 0)
                failed = 1;
            if (failed) {
                errors++;
                drop(c);
                churn_start(ep, c, &addr);
            }
        }
    }
    print_counts(start, end);
}

static void run_udp(int port, long sockets, long window, double seconds)
{
    struct sockaddr_in addr = target(port);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn *cs = calloc((size_t)sockets, sizeof *cs);
    static char buf[1 << 16];
    uint64_t start = now_ns(), end = start + (uint64_t)(seconds * 1e9), t = start;
    for (long i = 0; i < sockets; i++) {
        struct conn *c = &cs[i];
        c->fd = open_socket(SOCK_DGRAM);
        if (connect(c->fd, (struct sockaddr *)&addr, sizeof addr) < 0)
            die("connect");
        add(ep, c, EPOLLIN);
        c->last_ns = start;
    }
    struct epoll_event evs[256];
    while (t < end) {
        for (long i = 0; i < sockets; i++) {
            struct conn *c = &cs[i];
            if (c->inflight > 0 && t - c->last_ns > UDP_LOSS_NS) {
                if (t < end)
                    lost += (uint64_t)c->inflight;
                c->inflight = 0;
            }
            while (c->inflight < window) {
                if (send(c->fd, request, request_len, 0) < 0) {
                    if (errno != EAGAIN)
                        errors++;
                    break;
                }
                if (c->inflight == 0)
                    c->last_ns = t;
                c->inflight++;
            }
        }
        int n = epoll_wait(ep, evs, 256, 5);
        t = now_ns();
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            ssize_t got;
            while ((got = recv(c->fd, buf, sizeof buf, 0)) >= 0) {
                c->last_ns = t;
                if (c->inflight > 0)
                    c->inflight--;
                if ((size_t)got != expect_len || memcmp(buf, expect, expect_len) != 0)
                    bad++;
                else if (t < end) {
                    ops++;
                    bytes_ok += (uint64_t)got;
                }
            }
            if (errno != EAGAIN)
                errors++;
        }
    }
    print_counts(start, end);
}

int main(int argc, char **argv)
{
    struct rlimit lim;
    if (getrlimit(RLIMIT_NOFILE, &lim) == 0) {
        lim.rlim_cur = lim.rlim_max;
        setrlimit(RLIMIT_NOFILE, &lim);
    }
    signal(SIGPIPE, SIG_IGN);
    if (argc == 8 && strcmp(argv[1], "tcp") == 0) {
        request = slurp(argv[6], &request_len);
        expect = slurp(argv[7], &expect_len);
        run_tcp(atoi(argv[2]), atol(argv[3]), atol(argv[4]), atof(argv[5]));
    } else if (argc == 7 && strcmp(argv[1], "churn") == 0) {
        request = slurp(argv[5], &request_len);
        expect = slurp(argv[6], &expect_len);
        run_churn(atoi(argv[2]), atol(argv[3]), atof(argv[4]));
    } else if (argc == 8 && strcmp(argv[1], "udp") == 0) {
        request = slurp(argv[6], &request_len);
        expect = slurp(argv[7], &expect_len);
        run_udp(atoi(argv[2]), atol(argv[3]), atol(argv[4]), atof(argv[5]));
    } else {
        fprintf(stderr, "usage: loadgen tcp|churn|udp PORT N [WINDOW] SECONDS REQUEST EXPECT\n");
        return 2;
    }
    return 0;
}
