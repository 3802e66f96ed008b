// Anchor of the tests' precompiled header (tests/CMakeLists.txt, sp_test_pch).
