# tests/kernels/: the CUDA kernels against their CPU twins. Included from
# tests/CMakeLists.txt; built only where kernels/ was (CUDA toolkit found).
# The GPU cases skip themselves on a machine without a CUDA device.
if(TARGET skillpack_kernels)
  add_executable(kernels_kernels_test
    ${CMAKE_CURRENT_LIST_DIR}/kernels_test.cc
    ${CMAKE_CURRENT_LIST_DIR}/kernels_reference.cc)
  # skillpack_kernels brings CUDA::cudart and CUDA::cublas (PUBLIC).
  target_link_libraries(kernels_kernels_test PRIVATE
    skillpack_kernels sp_codec GTest::gtest GTest::gtest_main)
  skillpack_target_defaults(kernels_kernels_test)
  gtest_discover_tests(kernels_kernels_test DISCOVERY_TIMEOUT 120 PROPERTIES TIMEOUT 900)
endif()
