; C++ tags: definitions and references (for chunking and the symbol map).

(function_definition
  declarator: [
    (function_declarator
      declarator: (_) @name.definition.function)
    (pointer_declarator
      declarator: (function_declarator
        declarator: (_) @name.definition.function))
    (reference_declarator
      (function_declarator
        declarator: (_) @name.definition.function))
  ]) @definition.function

(class_specifier
  name: (_) @name.definition.class
  body: (field_declaration_list)) @definition.class

(struct_specifier
  name: (_) @name.definition.struct
  body: (field_declaration_list)) @definition.struct

(union_specifier
  name: (_) @name.definition.union
  body: (field_declaration_list)) @definition.union

(enum_specifier
  name: (_) @name.definition.enum
  body: (enumerator_list)) @definition.enum

(namespace_definition
  name: (_) @name.definition.namespace) @definition.namespace

(type_definition
  declarator: (type_identifier) @name.definition.type) @definition.type

(alias_declaration
  name: (type_identifier) @name.definition.type) @definition.type

(preproc_function_def
  name: (identifier) @name.definition.macro) @definition.macro

(call_expression
  function: [
    (identifier) @name.reference.call
    (qualified_identifier
      name: (identifier) @name.reference.call)
    (field_expression
      field: (field_identifier) @name.reference.call)
  ]) @reference.call

(base_class_clause
  [
    (type_identifier) @name.reference.class
    (qualified_identifier
      name: (type_identifier) @name.reference.class)
  ]) @reference.class

(preproc_include
  path: (_) @name.reference.import) @reference.import
