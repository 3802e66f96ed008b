# Layer views and the one way to declare a library or binary of a layer.
#
# SKILLPACK_LAYER_<folder> lists the source folders a target of <folder> may
# include from (DESIGN.md's "may depend on" column plus itself). Generated
# protobuf headers ("skillpack/v1/...") come only through linking sp_proto,
# which only rpc/, trainer/, server/ and cli/ do. tests/tools/layering_test.py
# reads these lines (keep them one set() each).
set(SKILLPACK_LAYER_kernels kernels)
set(SKILLPACK_LAYER_core    core kernels)
set(SKILLPACK_LAYER_pack    pack core kernels)
set(SKILLPACK_LAYER_router  router pack core kernels)
set(SKILLPACK_LAYER_rpc     rpc core kernels)
set(SKILLPACK_LAYER_trainer trainer rpc router pack core kernels)
set(SKILLPACK_LAYER_server  server rpc router pack core kernels)
set(SKILLPACK_LAYER_cli     cli rpc router pack core kernels)

# The include root of layer `layer`: ${CMAKE_BINARY_DIR}/layers/<layer>/ with
# one symbolic link per allowed folder.
function(sp_layer_view layer out_var)
  if(NOT DEFINED SKILLPACK_LAYER_${layer})
    message(FATAL_ERROR "unknown layer '${layer}'")
  endif()
  set(view ${CMAKE_BINARY_DIR}/layers/${layer})
  file(MAKE_DIRECTORY ${view})
  foreach(folder ${SKILLPACK_LAYER_${layer}})
    if(NOT EXISTS ${view}/${folder})
      file(CREATE_LINK ${PROJECT_SOURCE_DIR}/${folder} ${view}/${folder} SYMBOLIC)
    endif()
  endforeach()
  set(${out_var} ${view} PARENT_SCOPE)
endfunction()

# sp_library(<name> LAYER <folder> SOURCES <files...> [DEPS <targets...>]
#            [PRIVATE_DEPS <targets...>])
# A static library of one layer: its include root is the layer's view, its
# warnings are ours, its DEPS are PUBLIC (they appear in its headers).
function(sp_library name)
  cmake_parse_arguments(L "" "LAYER" "SOURCES;DEPS;PRIVATE_DEPS" ${ARGN})
  sp_layer_view(${L_LAYER} view)
  add_library(${name} STATIC ${L_SOURCES})
  target_include_directories(${name} PUBLIC ${view})
  target_link_libraries(${name} PUBLIC ${L_DEPS} PRIVATE ${L_PRIVATE_DEPS})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SKILLPACK_WARNINGS}>)
endfunction()

# sp_binary(<name> LAYER <folder> SOURCES <files...> DEPS <targets...>)
# An executable of one layer (same include rule as sp_library).
function(sp_binary name)
  cmake_parse_arguments(L "" "LAYER" "SOURCES;DEPS" ${ARGN})
  sp_layer_view(${L_LAYER} view)
  add_executable(${name} ${L_SOURCES})
  target_include_directories(${name} PRIVATE ${view})
  target_link_libraries(${name} PRIVATE ${L_DEPS})
  target_compile_options(${name} PRIVATE $<$<COMPILE_LANGUAGE:CXX>:${SKILLPACK_WARNINGS}>)
endfunction()
