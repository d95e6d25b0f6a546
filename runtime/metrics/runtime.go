package metrics

import (
	"runtime"
)

// writeRuntime writes the daemon's own Go and process series, under the
// names and meanings of client_golang's standard collectors, so that
// dashboards made for any Go program read them.
func writeRuntime(t *text) {
	t.one("go_goroutines", "Number of goroutines that currently exist.", false, float64(runtime.NumGoroutine()))
	threads, _ := runtime.ThreadCreateProfile(nil)
	t.one("go_threads", "Number of OS threads created.", false, float64(threads))
	t.family(gaugeFamily("go_info", "Information about the Go environment.", "version"),
		[]sample{{labels: []string{runtime.Version()}, value: 1}})

	var ms runtime.MemStats
	runtime.ReadMemStats(&ms)
	t.one("go_memstats_alloc_bytes", "Number of bytes allocated in heap and currently in use.", false, float64(ms.HeapAlloc))
	t.one("go_memstats_alloc_bytes_total", "Total number of bytes allocated in heap until now, even if released already.", true, float64(ms.TotalAlloc))
	t.one("go_memstats_sys_bytes", "Number of bytes obtained from system.", false, float64(ms.Sys))
	t.one("go_memstats_heap_inuse_bytes", "Number of heap bytes that are in use.", false, float64(ms.HeapInuse))
	t.one("go_memstats_heap_objects", "Number of currently allocated objects.", false, float64(ms.HeapObjects))
	t.one("go_memstats_last_gc_time_seconds", "Number of seconds since 1970 of last garbage collection.", false, float64(ms.LastGC)/1e9)
	t.one("go_gc_cycles_total", "Garbage collection cycles completed.", true, float64(ms.NumGC))

	writeProcess(t)
}
