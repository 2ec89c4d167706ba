"""The sharing workflow (DESIGN.md section 9): applications (申请) and their approval, which
creates grants. The rules are pure (`policies.workflow`); `applications` keeps the state and
the history; `admin_graphql` is the admin API (`POST /admin/graphql`); `cli` the commands."""
