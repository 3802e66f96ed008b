# End-to-end suites: each drives real binaries, so it depends on them.
skillpack_test(e2e/pack_cli_test sp_pack)
add_dependencies(e2e_pack_cli_test skillpack)
