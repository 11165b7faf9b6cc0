// bench/peers/boost_mq.cpp - a C interface to Boost.Interprocess
// message_queue, so bench_queue can drive it like its other peers.
#include <boost/interprocess/ipc/message_queue.hpp>
#include <cstddef>
#include <new>

namespace bip = boost::interprocess;

extern "C" {

/* Creates (replacing any stale one) a queue of depth messages of at most
 * msgsize bytes.  0 or -1. */
int bench_boost_create(const char *name, size_t depth, size_t msgsize)
{
    try {
        bip::message_queue::remove(name);
        bip::message_queue mq(bip::create_only, name, depth, msgsize);
        return 0;
    } catch (...) {
        return -1;
    }
}

void *bench_boost_open(const char *name)
{
    try {
        return new bip::message_queue(bip::open_only, name);
    } catch (...) {
        return nullptr;
    }
}

int bench_boost_send(void *h, const void *msg, size_t len)
{
    try {
        static_cast<bip::message_queue *>(h)->send(msg, len, 0);
        return 0;
    } catch (...) {
        return -1;
    }
}

long bench_boost_recv(void *h, void *buf, size_t cap)
{
    try {
        bip::message_queue::size_type got = 0;
        unsigned prio = 0;
        static_cast<bip::message_queue *>(h)->receive(buf, cap, got, prio);
        return static_cast<long>(got);
    } catch (...) {
        return -1;
    }
}

void bench_boost_close(void *h)
{
    delete static_cast<bip::message_queue *>(h);
}

void bench_boost_remove(const char *name)
{
    bip::message_queue::remove(name);
}

}
