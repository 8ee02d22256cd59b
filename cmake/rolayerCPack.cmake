# SPDX-License-Identifier: Apache-2.0
# Debian packages with CPack (packaging/deb/build-and-test.sh builds and checks them):
#   librolayer0.1   the shared library (component runtime; the name follows the SONAME)
#   librolayer-dev  headers, the .so link, rolayer.pc, the CMake package (component development)
#   rolayer         the command-line tool (component tools)
# Configure for packaging with -DCMAKE_INSTALL_PREFIX=/usr -DROLAYER_PC_RELOCATABLE=OFF
# -DCMAKE_SKIP_INSTALL_RPATH=ON -DROLAYER_BUILD_TESTS=OFF, then `cpack -G DEB`.
set(ROLAYER_DEB_RUNTIME "librolayer${ROLAYER_SOVERSION}")
set(ROLAYER_DEB_REVISION 1)
set(ROLAYER_DEB_VERSION "${PROJECT_VERSION}-${ROLAYER_DEB_REVISION}")

set(CPACK_PACKAGE_NAME rolayer)
set(CPACK_PACKAGE_VENDOR "librolayer")
set(CPACK_PACKAGE_CONTACT "librolayer maintainers <librolayer@localhost.invalid>")
set(CPACK_PACKAGE_DESCRIPTION_SUMMARY "read-only container-image layer store")
set(CPACK_PACKAGE_VERSION ${PROJECT_VERSION})
set(CPACK_STRIP_FILES ON)
set(CPACK_GENERATOR DEB)
set(CPACK_DEB_COMPONENT_INSTALL ON)
set(CPACK_COMPONENTS_ALL runtime development tools)
set(CPACK_COMPONENT_DEVELOPMENT_DEPENDS runtime)
set(CPACK_COMPONENT_TOOLS_DEPENDS runtime)
set(CPACK_DEBIAN_ENABLE_COMPONENT_DEPENDS ON)
set(CPACK_DEBIAN_FILE_NAME DEB-DEFAULT)
set(CPACK_DEBIAN_PACKAGE_RELEASE ${ROLAYER_DEB_REVISION})
set(CPACK_DEBIAN_PACKAGE_MAINTAINER "${CPACK_PACKAGE_CONTACT}")
set(CPACK_DEBIAN_PACKAGE_SECTION libs)
set(CPACK_DEBIAN_PACKAGE_PRIORITY optional)
set(CPACK_DEBIAN_PACKAGE_HOMEPAGE "https://github.com/librolayer/librolayer")
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS ON)
set(CPACK_DEBIAN_PACKAGE_SHLIBDEPS_PRIVATE_DIRS ${PROJECT_BINARY_DIR})

set(CPACK_DEBIAN_RUNTIME_PACKAGE_NAME ${ROLAYER_DEB_RUNTIME})
set(CPACK_DEBIAN_RUNTIME_PACKAGE_SECTION libs)
# shlibs for every package with a shared library (only librolayer0.1 has one).
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS ON)
set(CPACK_DEBIAN_PACKAGE_GENERATE_SHLIBS_POLICY ">=")
# CPack indents the extended description and turns empty lines into " .".
set(rolayer_deb_about "librolayer registers container-image layers from tar streams and
exports them byte for byte, verified against their DiffID, behind a
stable C ABI.")
set(CPACK_DEBIAN_RUNTIME_DESCRIPTION "read-only container-image layer store (shared library)
${rolayer_deb_about}

This package contains the shared library. It carries private copies of
SQLite, zstd and xxHash, so that a host program's copies cannot be
called in their place.")
# The dpkg ldconfig trigger, as debhelper adds it. CPackDeb also writes postinst/postrm that
# call ldconfig (lintian: maintscript-calls-ldconfig, docs/abi.md).
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_EXTRA ${PROJECT_SOURCE_DIR}/packaging/deb/triggers)
set(CPACK_DEBIAN_RUNTIME_PACKAGE_CONTROL_STRICT_PERMISSION ON)

set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_NAME librolayer-dev)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SECTION libdevel)
set(CPACK_DEBIAN_DEVELOPMENT_PACKAGE_SHLIBDEPS OFF)
set(CPACK_DEBIAN_DEVELOPMENT_DESCRIPTION "read-only container-image layer store (development files)
${rolayer_deb_about}

This package contains the C headers, the pkg-config file and the
CMake package.")

set(CPACK_DEBIAN_TOOLS_PACKAGE_NAME rolayer)
set(CPACK_DEBIAN_TOOLS_PACKAGE_SECTION admin)
set(CPACK_DEBIAN_TOOLS_DESCRIPTION "read-only container-image layer store (command-line tool)
${rolayer_deb_about}

This package contains the rolayer command-line tool: register, export,
import OCI layouts and docker-save archives, verify.")

# Every package carries the copyright file and a Debian changelog (Debian policy 12.5, 12.7).
set(rolayer_deb_changelog ${PROJECT_BINARY_DIR}/packaging/changelog.Debian)
configure_file(${PROJECT_SOURCE_DIR}/packaging/deb/changelog.Debian.in ${rolayer_deb_changelog} @ONLY)
add_custom_command(OUTPUT ${rolayer_deb_changelog}.gz
  COMMAND gzip -9nkf ${rolayer_deb_changelog}
  DEPENDS ${rolayer_deb_changelog} VERBATIM)
set(rolayer_deb_man ${PROJECT_BINARY_DIR}/packaging/rolayer.1)
configure_file(${PROJECT_SOURCE_DIR}/packaging/deb/rolayer.1 ${rolayer_deb_man} COPYONLY)
add_custom_command(OUTPUT ${rolayer_deb_man}.gz
  COMMAND gzip -9nkf ${rolayer_deb_man}
  DEPENDS ${rolayer_deb_man} VERBATIM)
add_custom_target(rolayer_deb_changelog ALL DEPENDS ${rolayer_deb_changelog}.gz ${rolayer_deb_man}.gz)
install(FILES ${rolayer_deb_man}.gz DESTINATION ${CMAKE_INSTALL_MANDIR}/man1 COMPONENT tools EXCLUDE_FROM_ALL)
foreach(comp runtime development tools)
  string(TOUPPER ${comp} COMP)
  install(FILES ${PROJECT_SOURCE_DIR}/packaging/deb/copyright ${rolayer_deb_changelog}.gz
    DESTINATION ${CMAKE_INSTALL_DATAROOTDIR}/doc/${CPACK_DEBIAN_${COMP}_PACKAGE_NAME}
    COMPONENT ${comp} EXCLUDE_FROM_ALL)
endforeach()
include(CPack)
