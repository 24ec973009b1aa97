/*
 * The ceiling the benchmark compares against: a single-threaded epoll
 * server that upper-cases ASCII over TCP and UDP on 127.0.0.1, with no
 * Unicode and no framing.
 *
 * Sockets are non-blocking and SIGPIPE is ignored, so a client that leaves
 * mid-write costs an error return, not the process. A reply the kernel will
 * not take yet is kept and the connection is not read from until it drains
 * (the same flow control twisted-caps has), so memory stays bounded.
 * Logs "serving TCP on 127.0.0.1:PORT" and the same for UDP, like twistd caps.
 */
#define _GNU_SOURCE
#include <ctype.h>
#include <errno.h>
#include <netinet/in.h>
#include <arpa/inet.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/socket.h>
#include <unistd.h>

struct conn {
    int fd;
    char *pending;        /* reply bytes the kernel has not taken yet */
    size_t pending_len, pending_off;
};

static char buf[1 << 16];

static void die(const char *what)
{
    perror(what);
    exit(1);
}

static void upper(char *data, size_t n)
{
    for (size_t i = 0; i < n; i++)
        data[i] = (char)toupper((unsigned char)data[i]);
}

static int bound(int type)
{
    struct sockaddr_in addr = {.sin_family = AF_INET};
    socklen_t len = sizeof addr;
    int one = 1, fd = socket(AF_INET, type | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (fd < 0 || setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) < 0 ||
        bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0)
        die("bind");
    if (type == SOCK_STREAM && listen(fd, 4096) < 0)
        die("listen");
    if (getsockname(fd, (struct sockaddr *)&addr, &len) < 0)
        die("getsockname");
    printf("epoll-server: serving %s on 127.0.0.1:%d\n", type == SOCK_STREAM ? "TCP" : "UDP",
           ntohs(addr.sin_port));
    return fd;
}

static void set_events(int ep, struct conn *c, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.ptr = c};
    epoll_ctl(ep, EPOLL_CTL_MOD, c->fd, &ev);
}

static void drop(struct conn *c)
{
    close(c->fd); /* also removes it from the epoll set */
    free(c->pending);
    free(c);
}

/* Send what the kernel takes; keep the rest and wait for EPOLLOUT. */
static int reply(int ep, struct conn *c, const char *data, size_t n)
{
    ssize_t sent = send(c->fd, data, n, MSG_NOSIGNAL);
    if (sent < 0) {
        if (errno != EAGAIN && errno != EWOULDBLOCK)
            return -1;
        sent = 0;
    }
    if ((size_t)sent < n) {
        c->pending = malloc(n - (size_t)sent);
        if (!c->pending)
            return -1;
        memcpy(c->pending, data + sent, n - (size_t)sent);
        c->pending_len = n - (size_t)sent;
        c->pending_off = 0;
        set_events(ep, c, EPOLLOUT);
    }
    return 0;
}

static int drain(int ep, struct conn *c)
{
    ssize_t sent = send(c->fd, c->pending + c->pending_off, c->pending_len - c->pending_off,
                        MSG_NOSIGNAL);
    if (sent < 0)
        return errno == EAGAIN || errno == EWOULDBLOCK ? 0 : -1;
    c->pending_off += (size_t)sent;
    if (c->pending_off == c->pending_len) {
        free(c->pending);
        c->pending = NULL;
        set_events(ep, c, EPOLLIN);
    }
    return 0;
}

static void accept_all(int ep, int listener)
{
    int fd;
    while ((fd = accept4(listener, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC)) >= 0) {
        struct conn *c = calloc(1, sizeof *c);
        struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
        if (!c) {
            close(fd);
            continue;
        }
        c->fd = fd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, fd, &ev) < 0)
            drop(c);
    }
}

static void answer_datagrams(int udp)
{
    struct sockaddr_storage peer;
    for (int i = 0; i < 64; i++) {
        socklen_t len = sizeof peer;
        ssize_t n = recvfrom(udp, buf, sizeof buf, 0, (struct sockaddr *)&peer, &len);
        if (n < 0)
            return;
        upper(buf, (size_t)n);
        sendto(udp, buf, (size_t)n, 0, (struct sockaddr *)&peer, len);
    }
}

int main(void)
{
    signal(SIGPIPE, SIG_IGN);
    int listener = bound(SOCK_STREAM), udp = bound(SOCK_DGRAM);
    fflush(stdout);
    int ep = epoll_create1(EPOLL_CLOEXEC);
    struct conn listen_tag, udp_tag;
    struct epoll_event ev = {.events = EPOLLIN, .data.ptr = &listen_tag};
    epoll_ctl(ep, EPOLL_CTL_ADD, listener, &ev);
    ev.data.ptr = &udp_tag;
    epoll_ctl(ep, EPOLL_CTL_ADD, udp, &ev);
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0 && errno != EINTR)
            die("epoll_wait");
        for (int i = 0; i < n; i++) {
            struct conn *c = evs[i].data.ptr;
            if (c == &listen_tag) {
                accept_all(ep, listener);
                continue;
            }
            if (c == &udp_tag) {
                answer_datagrams(udp);
                continue;
            }
            if (c->pending) {
                if (drain(ep, c) < 0)
                    drop(c);
                continue;
            }
            ssize_t got = recv(c->fd, buf, sizeof buf, 0);
            if (got < 0 && (errno == EAGAIN || errno == EWOULDBLOCK))
                continue;
            if (got <= 0) {
                drop(c); /* EOF or error; every reply has already been sent */
                continue;
            }
            upper(buf, (size_t)got);
            if (reply(ep, c, buf, (size_t)got) < 0)
                drop(c);
        }
    }
}
