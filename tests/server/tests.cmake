# server/ suites (included from tests/CMakeLists.txt).
skillpack_test(server/metrics_test sp_metrics)
skillpack_test(server/metrics_http_test sp_metrics)
