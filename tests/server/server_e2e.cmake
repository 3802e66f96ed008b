# Suites of the inference server (included from tests/CMakeLists.txt): the
# pack store / cache unit test, and the end-to-end test that starts the real
# binaries (building it builds them too).
skillpack_test(server/pack_cache_test sp_server)

find_package(Protobuf REQUIRED)
find_package(gRPC CONFIG REQUIRED)

# Client stub of the standard grpc.health.v1 service (not shipped by Debian's
# gRPC packages).
set(health_gen ${CMAKE_CURRENT_BINARY_DIR}/health_gen)
file(MAKE_DIRECTORY ${health_gen})
set(health_out ${health_gen}/grpc/health/v1/health)
add_custom_command(
  OUTPUT ${health_out}.pb.cc ${health_out}.pb.h ${health_out}.grpc.pb.cc ${health_out}.grpc.pb.h
  COMMAND protobuf::protoc --proto_path=${CMAKE_CURRENT_LIST_DIR}
    --cpp_out=${health_gen} --grpc_out=${health_gen}
    --plugin=protoc-gen-grpc=${SKILLPACK_GRPC_CPP_PLUGIN}
    ${CMAKE_CURRENT_LIST_DIR}/grpc/health/v1/health.proto
  DEPENDS ${CMAKE_CURRENT_LIST_DIR}/grpc/health/v1/health.proto
  VERBATIM)
add_library(sp_test_health_proto STATIC
  ${health_out}.pb.cc ${health_out}.grpc.pb.cc)
target_include_directories(sp_test_health_proto SYSTEM PUBLIC ${health_gen})
target_link_libraries(sp_test_health_proto PUBLIC protobuf::libprotobuf gRPC::grpc++)

skillpack_test(e2e/server_test sp_server sp_model sp_test_health_proto)
add_dependencies(e2e_server_test skillpack-server skillpack)

# Routing end to end: a router trained with `skillpack router train`, served
# with --router, AUTO / Route / SetRouter through the real server.
skillpack_test(e2e/router_e2e_test sp_server sp_router sp_model)
add_dependencies(e2e_router_e2e_test skillpack-server skillpack)

# A client in another language: Python's grpcio (Debian's python3-grpcio, run
# with Debian's /usr/bin/python3) against the real server: health, reflection,
# Generate with protoc-generated Python messages, error codes.
add_test(NAME PythonGrpcClient
         COMMAND /usr/bin/python3 ${CMAKE_CURRENT_SOURCE_DIR}/e2e/python_client_test.py
                 ${PROJECT_BINARY_DIR} ${PROJECT_SOURCE_DIR}/proto)
set_tests_properties(PythonGrpcClient PROPERTIES TIMEOUT 300 ENVIRONMENT OMP_WAIT_POLICY=PASSIVE)
