# The metrics library: Prometheus registry + text exposition (metrics.cc) and
# the civetweb HTTP endpoint serving /metrics and /healthz (metrics_http.cc).
# Included from server/CMakeLists.txt.
# GLOBAL: sp_metrics' link interface names civetweb::civetweb, and targets
# linking sp_metrics from other folders (tests/) must be able to resolve it.
find_package(civetweb CONFIG REQUIRED GLOBAL)
add_library(sp_metrics STATIC metrics.cc metrics_http.cc)
target_include_directories(sp_metrics PUBLIC ${PROJECT_SOURCE_DIR})
target_link_libraries(sp_metrics PUBLIC sp_base ${CMAKE_DL_LIBS} PRIVATE civetweb::civetweb)
skillpack_target_defaults(sp_metrics)
