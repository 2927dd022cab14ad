# ctest driver for the packaging tests: configures, builds and runs the
# consumer project against ptkit, installed or as a subdirectory.
#
#   cmake -DMODE=installed|subdirectory -DSOURCE=<ptkit source dir>
#         -DBUILD=<ptkit build dir> -DWORK=<scratch dir> -DCXX=<compiler>
#         -DGENERATOR=<generator> -P consumer.cmake
foreach(var MODE SOURCE BUILD WORK CXX GENERATOR)
  if(NOT DEFINED ${var})
    message(FATAL_ERROR "consumer.cmake: -D${var}=... is required")
  endif()
endforeach()

function(run what)
  execute_process(COMMAND ${ARGN} RESULT_VARIABLE rc)
  if(NOT rc EQUAL 0)
    message(FATAL_ERROR "${what} failed (${rc}): ${ARGN}")
  endif()
endfunction()

file(REMOVE_RECURSE ${WORK})
set(args -G ${GENERATOR} -DCMAKE_CXX_COMPILER=${CXX} -DCMAKE_BUILD_TYPE=Release)
if(MODE STREQUAL "installed")
  set(prefix ${WORK}/prefix)
  run("install" ${CMAKE_COMMAND} --install ${BUILD} --prefix ${prefix})
  if(NOT EXISTS ${prefix}/include/ptkit/ptkit.hpp)
    message(FATAL_ERROR "install put no ptkit/ptkit.hpp under ${prefix}/include")
  endif()
  # Only the installed package may satisfy find_package: no package registry,
  # no system prefixes.
  list(APPEND args -DCMAKE_PREFIX_PATH=${prefix} -DPTKIT_EXPECTED_PREFIX=${prefix}
       -DCMAKE_FIND_USE_PACKAGE_REGISTRY=OFF -DCMAKE_FIND_USE_SYSTEM_PACKAGE_REGISTRY=OFF)
elseif(MODE STREQUAL "subdirectory")
  list(APPEND args -DPTKIT_SOURCE_DIR=${SOURCE})
else()
  message(FATAL_ERROR "consumer.cmake: unknown MODE '${MODE}'")
endif()

run("configure" ${CMAKE_COMMAND} -S ${SOURCE}/tests/packaging/consumer -B ${WORK}/build ${args})
run("build" ${CMAKE_COMMAND} --build ${WORK}/build)
run("consumer" ${WORK}/build/consumer)
message(STATUS "packaging.${MODE}: consumer built and passed")
