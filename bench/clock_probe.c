/*
 * clock_probe THREADS WINDOWS LOOPS: the clock each core runs at while all
 * THREADS of them are busy at once (boost included, as a GEMM on every core
 * sees it). Each thread times WINDOWS windows of LOOPS × 1000 dependent
 * register adds; an add whose input is the one before it takes one cycle on
 * every x86-64 core, so adds per second is cycles per second. The register
 * operand (not an immediate) keeps any renamer from folding the chain. The
 * threads start each window together (a barrier), so every window is timed
 * with all of them busy, not on a core boosting alone while others finished.
 * Prints one line per thread: its best window's GHz and the chain's sum,
 * which must be LOOPS × 1000 (else the chain did not run as written).
 */
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

#define ADDS_PER_LOOP 1000

static pthread_barrier_t window_start;

typedef struct {
  long loops;
  int windows;
  double best_ghz;
  uint64_t sum;
} Job;

static double seconds(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec + (double)t.tv_nsec * 1e-9;
}

static void *run(void *arg) {
  Job *job = (Job *)arg;
  uint64_t one = 1;
  for (int w = 0; w < job->windows; w++) {
    pthread_barrier_wait(&window_start);
    uint64_t x = 0;
    double t0 = seconds();
    for (long i = 0; i < job->loops; i++) {
      __asm__ volatile(".rept 1000\n\tadd %1, %0\n\t.endr" : "+r"(x) : "r"(one));
    }
    double ghz = (double)job->loops * ADDS_PER_LOOP / (seconds() - t0) / 1e9;
    if (ghz > job->best_ghz) job->best_ghz = ghz;
    job->sum = x;
  }
  return NULL;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: clock_probe THREADS WINDOWS LOOPS\n");
    return 2;
  }
  int threads = atoi(argv[1]), windows = atoi(argv[2]);
  long loops = atol(argv[3]);
  if (threads < 1 || threads > 1024 || windows < 1 || loops < 1) {
    fprintf(stderr, "clock_probe: expected positive THREADS (at most 1024), WINDOWS, LOOPS\n");
    return 2;
  }
  Job *jobs = calloc((size_t)threads, sizeof(Job));
  pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
  if (!jobs || !ids || pthread_barrier_init(&window_start, NULL, (unsigned)threads) != 0) {
    fprintf(stderr, "clock_probe: cannot allocate %d threads' state\n", threads);
    return 3;
  }
  for (int t = 0; t < threads; t++) {
    jobs[t].loops = loops;
    jobs[t].windows = windows;
    if (pthread_create(&ids[t], NULL, run, &jobs[t]) != 0) {
      fprintf(stderr, "clock_probe: cannot start thread %d of %d\n", t + 1, threads);
      return 3;
    }
  }
  for (int t = 0; t < threads; t++) pthread_join(ids[t], NULL);
  for (int t = 0; t < threads; t++) {
    printf("%.4f %llu\n", jobs[t].best_ghz, (unsigned long long)jobs[t].sum);
  }
  return 0;
}
