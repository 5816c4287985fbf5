// LD_PRELOADed into the "native + an idle thread" broker of bench/connect_storm: starts one
// thread that never runs. It measures what any plugin with a background thread costs
// mosquitto: glibc's malloc and free skip their arena locks only while a process has a single
// thread, and OpenSSL's handshakes allocate a lot.
#include <pthread.h>
#include <unistd.h>

namespace {

void* sleep_forever(void*) {
    for (;;) pause();
}

__attribute__((constructor)) void start_idle_thread() {
    pthread_t t;
    if (pthread_create(&t, nullptr, sleep_forever, nullptr) == 0) pthread_detach(t);
}

}  // namespace
