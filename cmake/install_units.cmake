# Writes the systemd units at install time (`cmake --install`, and cpack, which installs with its
# own prefix): ExecStart= names the binary where this install puts it, so a /usr/local install runs
# /usr/local/bin/outbox and the package /usr/bin/outbox. The prefix is only known then: the one of
# the configure step may be overridden by `cmake --install --prefix` or by cpack.
# Set by the install(CODE) in cmake/install.cmake: OUTBOX_UNIT_TEMPLATES (systemd/*.in and plain
# units), OUTBOX_UNIT_STAGING (a directory of the build tree), OUTBOX_INSTALL_BINDIR and
# OUTBOX_INSTALL_UNITDIR (relative to the prefix, or absolute).
function(outbox_install_path out path)
  if(IS_ABSOLUTE "${path}")
    set(${out} "${path}" PARENT_SCOPE)
  else()
    set(${out} "${CMAKE_INSTALL_PREFIX}/${path}" PARENT_SCOPE)
  endif()
endfunction()

outbox_install_path(bindir "${OUTBOX_INSTALL_BINDIR}")
outbox_install_path(unitdir "${OUTBOX_INSTALL_UNITDIR}")
set(OUTBOX_BINARY "${bindir}/outbox")
# One staging directory per prefix: a package build and a `cmake --install` may share a build tree.
string(MD5 prefix_key "${CMAKE_INSTALL_PREFIX}")
set(staging "${OUTBOX_UNIT_STAGING}/${prefix_key}")
set(units)
foreach(template IN LISTS OUTBOX_UNIT_TEMPLATES)
  get_filename_component(name "${template}" NAME)
  string(REGEX REPLACE "\\.in$" "" name "${name}")
  configure_file("${template}" "${staging}/${name}" @ONLY)
  list(APPEND units "${staging}/${name}")
endforeach()
file(INSTALL DESTINATION "${unitdir}" TYPE FILE FILES ${units})
